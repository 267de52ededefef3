use super::*;
use crate::model::Marketplace;

fn vault() -> (tempfile::TempDir, Vault, Identity) {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let v = Vault::create(&dir.path().join("vault"), &id.recipient()).unwrap();
    (dir, v, id)
}

const OZON: Schema = Schema::Store(Marketplace::Ozon);

#[test]
fn write_read_and_generations() {
    let (_d, v, id) = vault();
    let e = EntryId::store("ozon-main");
    let mut doc = Document::parse("client_id = \"1\"\napi_key = \"k1\"\n", OZON).unwrap();
    v.write(&e, &mut doc, None, Some(&id)).unwrap();
    let back = v.load(&e, OZON, &id).unwrap();
    assert_eq!(back.generation, 1);
    let mut doc2 = Document::parse("client_id = \"1\"\napi_key = \"k2\"\n", OZON).unwrap();
    v.write(&e, &mut doc2, Some(1), Some(&id)).unwrap();
    assert_eq!(v.load(&e, OZON, &id).unwrap().generation, 2);
    // A writer that started from generation 1 now conflicts.
    let mut stale = Document::parse("client_id = \"1\"\napi_key = \"k3\"\n", OZON).unwrap();
    assert!(matches!(
        v.write(&e, &mut stale, Some(1), Some(&id)),
        Err(VaultError::Conflict {
            expected: 1,
            found: 2,
            ..
        })
    ));
    let mode = fs::metadata(v.path_of(&e)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn load_all_keeps_order_and_reports_each_failure() {
    let (_d, v, id) = vault();
    let mut entries = Vec::new();
    for i in 0..150 {
        let e = EntryId::store(&format!("s{i}"));
        // Every 7th entry is missing.
        if i % 7 != 3 {
            let mut doc =
                Document::parse(&format!("client_id = \"{i}\"\napi_key = \"k\"\n"), OZON).unwrap();
            v.write(&e, &mut doc, None, Some(&id)).unwrap();
        }
        entries.push((e, OZON));
    }
    let got = v.load_all(&entries, &id);
    assert_eq!(got.len(), 150);
    for (i, r) in got.iter().enumerate() {
        match r {
            Ok(doc) => {
                assert_ne!(i % 7, 3);
                assert_eq!(doc.get("client_id").unwrap().expose_secret(), i.to_string());
            }
            Err(VaultError::Missing { entry, .. }) => {
                assert_eq!(i % 7, 3);
                assert_eq!(entry.name, format!("s{i}"));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn wrong_identity_is_a_clear_error() {
    let (_d, v, id) = vault();
    let e = EntryId::store("s");
    let mut doc = Document::parse("client_id = \"1\"\napi_key = \"k1\"\n", OZON).unwrap();
    v.write(&e, &mut doc, None, Some(&id)).unwrap();
    let other = Identity::generate();
    let err = v.read(&e, &other).unwrap_err().to_string();
    assert!(err.contains("no matching key"), "{err}");
}

#[test]
fn every_truncation_and_bit_flip_fails_cleanly() {
    let (_d, v, id) = vault();
    let e = EntryId::store("s");
    let mut doc = Document::parse("client_id = \"1\"\napi_key = \"CANARY-trunc\"\n", OZON).unwrap();
    v.write(&e, &mut doc, None, Some(&id)).unwrap();
    let sealed = fs::read(v.path_of(&e)).unwrap();
    for cut in 0..sealed.len() {
        let r = decrypt(&sealed[..cut], &id);
        // A cut inside the trailing newline of the armor may still decrypt in full.
        if let Ok(p) = r {
            assert!(cut >= sealed.len() - 2, "cut {cut} decrypted");
            assert!(p.as_str().contains("CANARY-trunc"));
        }
    }
    for i in 0..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[i] ^= 0x01;
        if let Ok(p) = decrypt(&flipped, &id) {
            // Only flips that armor tolerates (e.g. case of a header letter) may pass, and then
            // the content must be the whole original.
            assert!(p.as_str().contains("CANARY-trunc"));
        }
    }
}

#[test]
fn entries_are_written_0600_whatever_was_there() {
    let (_d, vault, identity) = vault();
    let id = EntryId::store("s1");
    let schema = Schema::Store(crate::model::Marketplace::Ozon);
    let text = "client_id = \"1\"\napi_key = \"k\"\n";
    vault
        .write(
            &id,
            &mut Document::parse(text, schema).unwrap(),
            None,
            Some(&identity),
        )
        .unwrap();
    let path = vault.path_of(&id);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        vault.permission_problems().len(),
        1,
        "{:?}",
        vault.permission_problems()
    );
    vault
        .write(
            &id,
            &mut Document::parse(text, schema).unwrap(),
            None,
            Some(&identity),
        )
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    // A symlinked entry is replaced by a private file, not followed.
    let elsewhere = vault.dir().join("elsewhere.age");
    fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(vault.permission_problems()[0].contains("symbolic link"));
    vault
        .write(
            &id,
            &mut Document::parse(text, schema).unwrap(),
            None,
            Some(&identity),
        )
        .unwrap();
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(vault.permission_problems().is_empty());
    fs::set_permissions(
        vault.dir().join("stores"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    assert!(vault.permission_problems()[0].contains("everyone"));
}

#[test]
fn stale_temp_files_are_removed() {
    let (_d, v, _id) = vault();
    let stale = v.dir().join("stores").join(".ozon.age.Ab12Cd");
    fs::write(&stale, b"junk").unwrap();
    assert_eq!(v.clean_stale_temp_files().unwrap(), 1);
    assert!(!stale.exists());
}

#[test]
fn identity_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("identity.txt");
    let id = Identity::generate();
    id.write_new(&p).unwrap();
    assert!(Identity::load(&p, || None).is_ok());
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::load(&p, || None).unwrap_err().to_string();
    assert!(err.contains("Permissions 0644"), "{err}");
    assert!(err.contains("too open"));
    // create_new refuses to overwrite.
    assert!(id.write_new(&p).is_err());
}

#[test]
fn passphrase_protected_identity() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("identity.age");
    let id = Identity::generate();
    let secret = id.inner.to_string();
    let enc = age::Encryptor::with_user_passphrase(SecretString::from("correct horse".to_string()));
    let mut out = Vec::new();
    let armored =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armored).unwrap();
    w.write_all(secret.expose_secret().as_bytes()).unwrap();
    w.finish().unwrap().finish().unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        f.write_all(&out).unwrap();
    }
    let loaded =
        Identity::load(&p, || Some(SecretString::from("correct horse".to_string()))).unwrap();
    assert_eq!(loaded.recipient().to_string(), id.recipient().to_string());
    assert!(matches!(
        Identity::load(&p, || Some(SecretString::from("wrong".to_string()))),
        Err(IdentityError::BadPassphrase { .. })
    ));
    assert!(matches!(
        Identity::load(&p, || None),
        Err(IdentityError::NeedsPassphrase { .. })
    ));
}

#[test]
fn plaintext_debug_shows_only_its_length() {
    let p = Plaintext(Zeroizing::new("api_key = \"CANARY-dbg\"".to_string()));
    assert!(!format!("{p:?}").contains("CANARY"));
}

#[test]
fn debug_of_identity_shows_only_the_public_key() {
    let id = Identity::generate();
    let secret = id.inner.to_string();
    let dbg = format!("{id:?} {id:#?}");
    assert!(!dbg.contains(secret.expose_secret()));
    assert!(dbg.contains("age1"));
}

#[test]
fn a_mailbox_entry_holds_a_password_or_an_oauth_grant() {
    let pw = Schema::Mailbox { xoauth2: false };
    assert!(Document::parse("password = \"CANARY-app-password\"\n", pw).is_ok());
    assert!(Document::parse("", pw).is_err());
    let oauth = Schema::Mailbox { xoauth2: true };
    let e = Document::parse("client_id = \"c\"\n", oauth).unwrap_err();
    assert!(e.to_string().contains("client_secret"), "{e}");
    assert!(!e.to_string().contains("CANARY"));
    assert_eq!(
        EntryId::parse("mailbox/us-mail").unwrap(),
        EntryId::mailbox("us-mail")
    );
}

#[test]
fn entry_paths_are_what_joining_the_parts_gives() {
    let ids = [
        EntryId::store("ozon-main"),
        EntryId {
            kind: EntryKind::Channel,
            name: "ops".into(),
        },
    ];
    for dir in ["", "/", "vault", "/var/lib/storeguard/vault", "/srv/vault/"] {
        let v = Vault {
            dir: PathBuf::from(dir),
        };
        for id in &ids {
            let joined = Path::new(dir)
                .join(id.kind.dir())
                .join(format!("{}.age", id.name));
            assert_eq!(v.path_of(id), joined, "{dir:?}");
            assert_eq!(v.path_of(id).as_os_str(), joined.as_os_str(), "{dir:?}");
        }
    }
}
