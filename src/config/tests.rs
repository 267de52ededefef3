use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("/etc/storeguard/storeguard.toml"), text)
}

fn first(text: &str) -> Problem {
    load(text).unwrap_err().problems.remove(0)
}

const OZON: &str = "[[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"123\"\n";

#[test]
fn store_lookup_by_id_survives_edits_of_the_list() {
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "[[store]]\nid = \"s{i}\"\nmarketplace = \"ozon\"\naccount = \"{i}\"\nschedule = \"*/15 * * * *\"\n"
        ));
    }
    let mut c = load(&text).unwrap();
    assert_eq!(c.store("s37").unwrap().account.as_deref(), Some("37"));
    assert_eq!(c.store_position("s37"), Some(37));
    assert!(c.store("s50").is_none());
    // Stores that spell out the same schedule share one parse, with its interval.
    assert_eq!(
        c.stores[3].schedule.min_interval(),
        Duration::from_secs(900)
    );
    // A caller that edits the list still finds stores (the index is only a shortcut).
    c.stores.remove(0);
    assert_eq!(c.store("s37").unwrap().id, "s37");
    assert_eq!(c.store_position("s37"), Some(36));
    assert!(c.store("s0").is_none());
}

#[test]
fn marketplace_tables_take_the_endpoints_of_the_spec_only() {
    let c = load("[marketplace.aliexpress]\nendpoint = \"http://127.0.0.1:9\"\n").unwrap();
    assert_eq!(
        c.endpoints
            .get(Marketplace::Aliexpress, "endpoint")
            .as_str(),
        "http://127.0.0.1:9/"
    );
    assert_eq!(
        c.endpoints.get(Marketplace::Ozon, "endpoint").as_str(),
        "https://api-seller.ozon.ru/"
    );
    let p = first("[marketplace.ozon]\nendpont = \"http://127.0.0.1:9\"\n");
    assert!(p.message.contains("unknown key `endpont`"), "{p:?}");
    assert!(p.help.contains("endpoint"), "{p:?}");
    assert!(p.location.is_some());
    let p = first("[marketplace.wildberry]\nendpoint = \"http://127.0.0.1:9\"\n");
    assert!(
        p.message.contains("unknown marketplace `wildberry`"),
        "{p:?}"
    );
    assert!(p.help.contains("ozon, amazon"), "{p:?}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = load(OZON).unwrap();
    assert_eq!(c.stores.len(), 1);
    assert_eq!(c.stores[0].name, "ozon-main");
    assert_eq!(c.defaults.failure_threshold, 3);
    assert_eq!(c.daemon.vault_dir, PathBuf::from("/etc/storeguard/vault"));
    assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(
        c.defaults.expiry_warning[0],
        Duration::from_secs(14 * 86_400)
    );
}

#[test]
fn unknown_key_points_at_it() {
    let p = first("[defaults]\nshedule = \"* * * * *\"\n");
    assert_eq!(p.location.as_ref().unwrap().line, 2);
    assert_eq!(p.location.as_ref().unwrap().col, 1);
    assert!(
        p.message.starts_with("unknown field `shedule`"),
        "{}",
        p.message
    );
}

#[test]
fn amazon_schedule_tighter_than_five_minutes_is_refused() {
    let p = first(
        "[[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\nregion = \"na\"\nschedule = \"*/2 * * * *\"\n",
    );
    assert!(p.message.contains("at most every 5m"), "{}", p.message);
    assert_eq!(p.location.unwrap().line, 5);
}

#[test]
fn fast_schedules_are_allowed_against_loopback_fakes() {
    let text = "[marketplace.amazon]\ntoken_endpoint = \"http://127.0.0.1:1/auth/o2/token\"\nna = \"http://127.0.0.1:2\"\n\
                [[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\nregion = \"na\"\nschedule = \"*/2 * * * * *\"\n";
    assert!(load(text).is_ok());
}

#[test]
fn amazon_without_region() {
    let p = first("[[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\n");
    assert!(p.message.contains("has no `region`"));
}

#[test]
fn duplicate_ids_and_unknown_channels_all_reported() {
    let e = load(&format!("{OZON}{OZON}channels = [\"nope\"]\n")).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.problems[0].message.contains("duplicate store id"));
    assert!(e.problems[1].message.contains("unknown channel `nope`"));
}

#[test]
fn plain_http_only_to_loopback() {
    assert!(load("[marketplace.ozon]\nendpoint = \"http://127.0.0.1:8080\"\n").is_ok());
    assert!(load("[marketplace.ozon]\nendpoint = \"http://[::1]:8080\"\n").is_ok());
    let p = first("[marketplace.ozon]\nendpoint = \"http://api-seller.ozon.ru\"\n");
    assert!(p.message.contains("not loopback"));
}

#[test]
fn globs() {
    assert!(glob_match("ozon-*", "ozon-main"));
    assert!(glob_match("*", "x"));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("*-main", "ozon-main"));
    assert!(!glob_match("ozon-*", "amazon-us"));
    assert!(!glob_match("a?c", "ac"));
}

#[test]
fn maintenance_windows() {
    use chrono::TimeZone;
    let c = load(&format!(
        "{OZON}[[maintenance]]\nname = \"weekly\"\nschedule = \"0 3 * * *\"\nduration = \"2h\"\nstores = [\"ozon-*\"]\n\
         [[maintenance]]\nstart = 2026-12-01T00:00:00Z\nend = \"2026-12-02T00:00:00Z\"\n"
    ))
    .unwrap();
    let tz = crate::zone::Zone::UTC;
    let at = |h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 11, 3, h, m, 0).unwrap();
    let weekly = &c.maintenance[0];
    assert_eq!(weekly.open_until(tz, at(2, 59)), None);
    assert_eq!(weekly.open_until(tz, at(3, 0)), Some(at(5, 0)));
    assert_eq!(weekly.open_until(tz, at(4, 30)), Some(at(5, 0)));
    assert_eq!(weekly.open_until(tz, at(5, 0)), None);
    assert!(weekly.selector.matches(&c.stores[0]));
    let fixed = &c.maintenance[1];
    let d1 = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    assert!(fixed.open_until(tz, d1).is_some());
    let p = first(&format!(
        "{OZON}[[maintenance]]\nschedule = \"0 3 * * *\"\n"
    ));
    assert!(p.message.contains("either `schedule` and `duration`"));
}

#[test]
fn bom_and_crlf_are_accepted() {
    let text = format!("\u{feff}{}", OZON.replace('\n', "\r\n"));
    assert!(load(&text).is_ok());
}

#[test]
fn empty_file_is_an_error() {
    assert!(first("  \n").message.contains("empty"));
}

#[test]
fn relative_paths_follow_the_config_file() {
    let c = Config::from_toml(
        Path::new("/srv/sg/storeguard.toml"),
        "[daemon]\nstate_dir = \"state\"\nidentity = \"id.txt\"\n",
    )
    .unwrap();
    assert_eq!(c.daemon.state_dir, PathBuf::from("/srv/sg/state"));
    assert_eq!(c.daemon.identity, PathBuf::from("/srv/sg/id.txt"));
}

#[test]
fn channel_settings_are_checked_per_kind() {
    let p = first("[[channel]]\nname = \"tg\"\nkind = \"telegram\"\n");
    assert!(p.message.contains("has no `chat_id`"));
    let p = first("[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nchat_id = 5\n");
    assert!(p.message.contains("applies only to telegram"));
}

#[test]
fn mailboxes_serve_known_stores_and_keep_passwords_off_the_wire() {
    let amazon = "[[store]]\nid = \"amazon-us\"\nmarketplace = \"amazon\"\nregion = \"na\"\n";
    let c = load(&format!(
        "[mail]\nresolver = \"127.0.0.1:5353\"\nbackfill = \"3d\"\n\n{amazon}\n\
         [[mailbox]]\nname = \"us-mail\"\nhost = \"imap.qq.com\"\nusername = \"seller@qq.com\"\nstores = [\"amazon-us\"]\nfolders = [\"广告邮件\"]\n\n\
         [[mailbox]]\nname = \"gmail\"\nhost = \"imap.gmail.com\"\nusername = \"s@gmail.com\"\nauth = \"xoauth2\"\ntls = \"starttls\"\nstores = [\"amazon-us\"]\n"
    ))
    .unwrap();
    assert_eq!(c.mail.resolver, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(c.mail.backfill, Duration::from_secs(3 * 86_400));
    let qq = &c.mailboxes[0];
    assert_eq!(
        (qq.port, qq.tls, qq.auth),
        (993, MailTls::Tls, MailAuth::Password)
    );
    assert_eq!(qq.folders, vec!["广告邮件"]);
    assert_eq!(c.mailboxes[1].port, 143);
    assert_eq!(c.mailboxes[1].auth, MailAuth::Xoauth2);
    // Defaults: the system's resolver, a week of back-fill.
    let d = load(amazon).unwrap();
    assert_eq!(d.mail.resolver, None);
    assert_eq!(d.mail.backfill, Duration::from_secs(7 * 86_400));

    let bad =
        |mailbox: &str| first(&format!("{amazon}\n[[mailbox]]\nname = \"m\"\n{mailbox}\n")).message;
    assert!(
        bad("host = \"imap.qq.com\"\nusername = \"u\"\nstores = [\"nope\"]")
            .contains("unknown store `nope`")
    );
    assert!(
        bad("host = \"imap.qq.com\"\nusername = \"u\"\nstores = []").contains("serves no store")
    );
    assert!(
        bad("host = \"imap.qq.com\"\ntls = \"none\"\nusername = \"u\"\nstores = [\"amazon-us\"]")
            .contains("in the clear")
    );
    assert!(load(&format!("{amazon}\n[[mailbox]]\nname = \"m\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nport = 1143\nusername = \"u\"\nstores = [\"amazon-us\"]\n")).is_ok());
    assert!(
        first("[mail]\nresolver = \"dns.google\"\n")
            .message
            .contains("not an IP:port")
    );
    assert!(
        first("[mail]\nbackfill = \"400d\"\n")
            .message
            .contains("90 days")
    );
}

#[test]
fn login_hours_are_a_range_in_a_timezone() {
    use chrono::TimeZone;
    let store = |h: &str| {
        format!(
            "[[store]]\nid = \"amazon-us\"\nmarketplace = \"amazon\"\nregion = \"na\"\nlogin_hours = \"{h}\"\n"
        )
    };
    let c = load(&store("08:00-22:00 Asia/Shanghai")).unwrap();
    let hours = c.stores[0].login_hours.unwrap();
    let utc = |h, m| chrono::Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap();
    assert!(!hours.contains(utc(19, 12)), "03:12 in Shanghai");
    assert!(hours.contains(utc(2, 0)), "10:00 in Shanghai");
    assert!(!hours.contains(utc(14, 0)), "22:00 is the end, outside");
    // Past midnight, in the daemon's timezone (UTC here).
    let night = load(&store("20:00-04:00")).unwrap().stores[0]
        .login_hours
        .unwrap();
    assert!(night.contains(utc(23, 0)) && night.contains(utc(3, 59)));
    assert!(!night.contains(utc(12, 0)));
    assert!(
        load("[[store]]\nid = \"a\"\nmarketplace = \"amazon\"\nregion = \"na\"\n")
            .unwrap()
            .stores[0]
            .login_hours
            .is_none()
    );
    for (bad, says) in [
        ("8-22", "is not a time"),
        ("08:00-22:00 Mars/Base", "unknown timezone"),
        ("08:00-08:00", "empty"),
        ("08:00", "no `-`"),
    ] {
        let p = first(&store(bad));
        assert!(p.message.contains(says), "{bad}: {}", p.message);
    }
}

#[test]
fn a_user_mail_catalogue_is_read_and_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("storeguard.toml");
    let load_with = |rules: &str| {
        std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
        Config::from_toml(&cfg, "[mail]\ncatalogue = \"rules.toml\"\n")
    };
    let ok = load_with(
        "[[marketplace]]\nid = \"ozon\"\ndomains = [\"ozon-seller.example\"]\n\n\
         [[rule]]\nmarketplace = \"ozon\"\nevent = \"new_sign_in\"\nsubject = [\"Новый вход\"]\n",
    )
    .unwrap();
    let (path, _) = ok.mail.catalogue.clone().unwrap();
    assert_eq!(path, dir.path().join("rules.toml"));
    let raw =
        "From: Ozon <noreply@ozon-seller.example>\r\nSubject: Новый вход в аккаунт\r\n\r\nbody"
            .as_bytes();
    let c = ok.mail.catalogue().classify(raw).unwrap();
    assert_eq!(c.event, Some(crate::mail::MailEvent::NewSignIn));
    let bad = load_with("[[rule]]\nmarketplace = \"ozon\"\nevent = \"new_sign_in\"\n").unwrap_err();
    assert!(
        bad.problems[0].message.contains("would match every mail"),
        "{}",
        bad.problems[0].message
    );
    std::fs::remove_file(dir.path().join("rules.toml")).unwrap();
    let missing = Config::from_toml(&cfg, "[mail]\ncatalogue = \"rules.toml\"\n").unwrap_err();
    assert!(
        missing.problems[0]
            .message
            .contains("cannot read the mail catalogue")
    );
}

/// A file over the one-piece size: `prelude`, `n` stores of several shapes, then `tail`.
fn large(prelude: &str, n: usize, tail: &str) -> String {
    let mut text = String::from(prelude);
    for i in 0..n {
        text.push_str(&format!(
            "[[store]]\nid = \"s{i:05}\"\nmarketplace = \"ozon\"\naccount = \"{i}\"\nname = \"店铺 {i}\"\n"
        ));
        match i % 4 {
            0 => text.push_str("tags = [\"a\", \"b\"]\n  # a comment line\n"),
            1 => text.push_str("schedule = \"*/15 * * * *\"\nenabled = false\n"),
            2 => text.push_str("channels = [\n  \"console\",\n]\n"),
            _ => text.push_str(&format!(
                "\n   [[ store ]]   # the next one, written loosely\nid = \"t{i}\"\nmarketplace = \"wildberries\"\naccount = \"seller-{i}\"\n"
            )),
        }
    }
    text.push_str(tail);
    assert!(text.len() > parse::WHOLE_BYTES);
    text
}

/// What `text` reads as, parsed whole (the one-piece parser) and validated.
fn read_whole(text: &str) -> Config {
    let raw: RawConfig = toml::from_str(text).unwrap();
    let mut c = Collector {
        src: Source {
            path: Path::new("/etc/storeguard/storeguard.toml"),
            text,
        },
        problems: Vec::new(),
    };
    let config = validate(raw, &mut c);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    config
}

/// Whether two configs read the same (their maps print in no fixed order: compared apart).
fn same(a: &Config, b: &Config) -> bool {
    format!("{:?}", (&a.stores, &a.channels, &a.defaults, &a.daemon))
        == format!("{:?}", (&b.stores, &b.channels, &b.defaults, &b.daemon))
        && a.stores.iter().all(|s| a.base_url(s) == b.base_url(s))
}

const PRELUDE: &str = "[daemon]\nlanguage = \"en\"\n\n[defaults]\nschedule = \"0 * * * *\"\n\n[[channel]]\nname = \"console\"\nkind = \"log\"\n\n";

#[test]
fn a_large_file_read_in_pieces_reads_as_it_does_whole() {
    let text = large(PRELUDE, 4000, "");
    assert!(
        parse::in_pieces(&text).is_some(),
        "this file is read in pieces"
    );
    let c = load(&text).unwrap();
    assert_eq!(c.stores.len(), 5000);
    assert_eq!(c.stores[4999].id, "t3999");
    assert!(same(&c, &read_whole(&text)));
}

#[test]
fn a_large_file_with_tables_after_the_stores_reads_as_it_does_whole() {
    // A table that is in one piece only: still read in pieces.
    let tail = "[[maintenance]]\nstores = [\"s0*\"]\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2026-01-02T00:00:00Z\"\n";
    let text = large(PRELUDE, 4000, tail);
    assert!(parse::in_pieces(&text).is_some());
    let c = load(&text).unwrap();
    assert_eq!(c.maintenance.len(), 1);
    assert!(same(&c, &read_whole(&text)));
    // `[[channel]]` is in the prelude too: read whole (only `[[store]]` goes on across pieces).
    let text = large(
        PRELUDE,
        4000,
        "[[channel]]\nname = \"late\"\nkind = \"log\"\n",
    );
    assert!(parse::in_pieces(&text).is_none());
    assert_eq!(load(&text).unwrap().channels.len(), 2);

    // A table in two pieces, allowed by TOML: read whole.
    let prelude = format!("{PRELUDE}[marketplace.ozon]\nendpoint = \"http://127.0.0.1:9/\"\n\n");
    let tail = "[marketplace.wildberries]\nendpoint = \"http://127.0.0.1:8/\"\n";
    let text = large(&prelude, 4000, tail);
    assert!(parse::in_pieces(&text).is_none());
    let c = load(&text).unwrap();
    assert!(same(&c, &read_whole(&text)));
    assert_eq!(
        c.base_url(c.store("t3").unwrap()).as_str(),
        "http://127.0.0.1:8/"
    );
    assert_eq!(
        c.base_url(c.store("s00003").unwrap()).as_str(),
        "http://127.0.0.1:9/"
    );

    // A table in two pieces, refused by TOML: the whole-file parser's message.
    let text = large(PRELUDE, 4000, "[daemon]\nlanguage = \"zh-CN\"\n");
    assert!(parse::in_pieces(&text).is_none());
    let p = first(&text);
    assert!(p.message.contains("duplicate"), "{}", p.message);

    // The string runs past where the next piece would start.
    let filler = "x".repeat(parse::PIECE_BYTES);
    let quoted = format!(
        "[[store]]\nid = \"quoted\"\nmarketplace = \"ozon\"\naccount = \"1\"\nname = '''\n{filler}\n[[store]]\n'''\n"
    );
    let text = large(&format!("{PRELUDE}{quoted}"), 4000, "");
    assert!(parse::in_pieces(&text).is_none());
    // Read as one string (a name may not hold a line break: the one problem of this file).
    let e = load(&text).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e:?}");
    assert!(e.problems[0].message.contains("`store[0].name`"), "{e:?}");
}

#[test]
fn a_large_file_points_at_the_line_of_a_mistake_in_a_late_store() {
    let text = large(PRELUDE, 4000, "");
    let line_of = |text: &str, needle: &str| text[..text.find(needle).unwrap()].lines().count() + 1;
    // A value the validator refuses: its span comes from a piece, its line from the whole file.
    let bad = text.replacen(
        "account = \"3901\"\n",
        "account = \"3901\"\ntimeout = \"soon\"\n",
        1,
    );
    let p = first(&bad);
    assert_eq!(
        p.location.unwrap().line,
        line_of(&bad, "timeout = \"soon\""),
        "{}",
        p.message
    );
    // A syntax error and an unknown key: the whole-file parser's messages.
    for (needle, broken) in [
        ("account = \"3902\"\n", "account = \"3902\n"),
        (
            "account = \"3903\"\n",
            "account = \"3903\"\ncolour = \"red\"\n",
        ),
    ] {
        let bad = text.replacen(needle, broken, 1);
        let p = first(&bad);
        let line = line_of(&bad, broken);
        assert!(
            p.location.as_ref().unwrap().line.abs_diff(line) <= 1,
            "{} at {:?}, expected near {line}",
            p.message,
            p.location
        );
    }
}
