use super::*;

fn mail(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: seller@qq.com\r\nSubject: {subject}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <a@b>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn the_catalogue_names_known_marketplaces_and_events_only() {
    let c = Catalogue::builtin();
    for m in &c.marketplaces {
        assert!(
            crate::model::Marketplace::parse(&m.id).is_some(),
            "{} is not a marketplace id",
            m.id
        );
        assert!(!m.domains.is_empty() && !m.names.is_empty(), "{}", m.id);
    }
    assert!(
        c.rules
            .iter()
            .all(|r| c.marketplaces.iter().any(|m| m.id == r.marketplace))
    );
}

#[test]
fn amazon_sign_in_attempt_is_a_code_request_with_its_facts() {
    let c = Catalogue::builtin();
    let m = mail(
        "\"amazon.com\" <account-update@amazon.com>",
        "amazon.com: Sign-in attempt",
        "Someone who knows your password is attempting to sign-in to your account.\n\
         When: December 1, 2026 10:00 UTC\nDevice: Chrome, Windows\nNear: Lagos, Nigeria\n\
         Your verification code is: 482913\nhttps://www.amazon.com/a/c/r?k=secret",
    );
    let got = c.classify(&m).unwrap();
    assert_eq!(got.marketplace, "amazon");
    assert_eq!(got.sender, Sender::Marketplace("amazon".into()));
    assert_eq!(got.event, Some(MailEvent::OtpRequested));
    assert_eq!(
        got.facts,
        vec![
            ("When".to_string(), "December 1, 2026 10:00 UTC".to_string()),
            ("Device".to_string(), "Chrome, Windows".to_string()),
            ("Near".to_string(), "Lagos, Nigeria".to_string()),
        ]
    );
    let all = format!("{got:?}");
    assert!(!all.contains("482913") && !all.contains("secret"), "{all}");
}

#[test]
fn one_subject_many_events_the_body_decides() {
    let c = Catalogue::builtin();
    let from = "\"amazon.com\" <account-update@amazon.com>";
    let subject = "Revision to Your Amazon.com Account";
    let event = |body: &str| {
        let got = c.classify(&mail(from, subject, body)).unwrap();
        (got.event, got.critical)
    };
    assert_eq!(
        event("Per your request, we have successfully disabled Two-Step Verification."),
        (Some(MailEvent::TwoFactorChanged), true)
    );
    assert_eq!(
        event("Per your request, we have successfully enabled Two-Step Verification."),
        (Some(MailEvent::TwoFactorChanged), false)
    );
    assert_eq!(
        event("Per your request, we have successfully changed your password."),
        (Some(MailEvent::PasswordChanged), false)
    );
    assert_eq!(
        event("The e-mail address associated with your account has been changed."),
        (Some(MailEvent::ContactChanged), false)
    );
    // From Amazon, but nothing a rule knows: recorded as unclassified, not guessed.
    assert_eq!(event("Your order has shipped."), (None, false));
}

#[test]
fn russian_and_chinese_mail_is_read() {
    let c = Catalogue::builtin();
    let yandex = c
        .classify(&mail(
            "Яндекс ID <noreply@id.yandex.ru>",
            "Кто-то входит в Ваш аккаунт на Яндексе",
            "Кто-то ввёл правильный пароль от аккаунта seller.\nМесто: Москва и Московская область\nПрограмма: Chrome 131 (Windows 10)",
        ))
        .unwrap();
    assert_eq!(yandex.event, Some(MailEvent::NewSignIn));
    assert_eq!(yandex.marketplace, "yandex_market");
    assert_eq!(
        yandex.facts[0],
        ("Место".into(), "Москва и Московская область".into())
    );
    let ozon = c
        .classify(&mail(
            "Ozon <mailer@sender.ozon.ru>",
            "Подтверждение учетных данных Ozon",
            "Для входа используйте код 123456",
        ))
        .unwrap();
    assert_eq!(ozon.event, Some(MailEvent::OtpRequested));
    let tiktok = c
        .classify(&mail(
            "TikTok Shop <no-reply@mail.tiktokglobalshop.com>",
            "TikTok Shop商家验证码",
            "您正在进行邮箱验证，请在验证码输入框中输入 654321",
        ))
        .unwrap();
    assert_eq!(tiktok.event, Some(MailEvent::OtpRequested));
    // The code in a subject is removed too.
    let ali = c
        .classify(&mail(
            "Alibaba.com <notice@notice.alibaba.com>",
            "Alibaba.com verification code: 739201",
            "",
        ))
        .unwrap();
    assert_eq!(ali.subject, "Alibaba.com verification code: [code]");
}

#[test]
fn look_alikes_and_forged_senders_are_phishing() {
    let c = Catalogue::builtin();
    for from in [
        "\"amazon.com\" <account-update@amazon-security-alerts.com>",
        "Amazon Seller Support <support@sellercentral-help.net>",
        "<alerts@amaz0n-verify.com>",
        "Shopee <info@security.shopee.co.th.evil.example>",
    ] {
        let got = c
            .classify(&mail(
                from,
                "Your account is at risk of deactivation",
                "Click here",
            ))
            .unwrap_or_else(|| panic!("{from}"));
        assert_eq!(got.event, Some(MailEvent::PhishingSuspected), "{from}");
        assert!(matches!(got.sender, Sender::LookAlike(_)), "{from}");
    }
    // Two From addresses: not trusted, whatever they say.
    let two = c
        .classify(&mail(
            "account-update@amazon.com, attacker@example.com",
            "Revision to Your Amazon.com Account",
            "we have successfully changed your password",
        ))
        .unwrap();
    assert_eq!(two.sender, Sender::Ambiguous);
    assert_eq!(two.event, Some(MailEvent::PhishingSuspected));
    // Mail that neither comes from nor claims a marketplace is none of ours.
    assert!(
        c.classify(&mail("Bob <bob@example.com>", "Lunch?", "at noon"))
            .is_none()
    );
    // A genuine subdomain is the marketplace's.
    let real = c
        .classify(&mail(
            "Shopee <info@security.shopee.co.th>",
            "Login",
            "có lần đăng nhập mới https://th.shp.ee/dlink/approve?t=secret",
        ))
        .unwrap();
    assert_eq!(real.event, Some(MailEvent::LoginApprovalRequested));
}

#[test]
fn html_only_mail_is_read_and_user_rules_come_first() {
    let html = "From: TikTok Shop <no-reply@mail.tiktokglobalshop.com>\r\nSubject: Notice\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Your <b>shop has been deactivated</b>.</p>\r\n";
    let c = Catalogue::builtin();
    assert_eq!(
        c.classify(html.as_bytes()).unwrap().event,
        Some(MailEvent::AccountSuspended)
    );
    let user = Catalogue::with_user(
        "[[rule]]\nmarketplace = \"tiktok_shop\"\nevent = \"account_at_risk\"\nbody = [\"deactivated\"]\n",
    )
    .unwrap();
    assert_eq!(
        user.classify(html.as_bytes()).unwrap().event,
        Some(MailEvent::AccountAtRisk)
    );
    assert!(
        Catalogue::with_user(
            "[[rule]]\nmarketplace = \"tiktok_shop\"\nevent = \"otp_requested\"\n"
        )
        .is_err()
    );
    assert!(
        Catalogue::with_user(
            "[[rule]]\nmarketplace = \"ebay\"\nevent = \"otp_requested\"\nbody = [\"x\"]\n"
        )
        .is_err()
    );
    assert!(
        Catalogue::with_user(
            "[[rule]]\nmarketplace = \"ozon\"\nevent = \"made_up\"\nbody = [\"x\"]\n"
        )
        .is_err()
    );
}

#[test]
fn hostile_input_never_panics() {
    let c = Catalogue::builtin();
    for raw in [
        &b""[..],
        b"\xff\xfe\x00garbage",
        b"From: \r\n\r\n",
        b"From: =?utf-8?B?!!!?= <x@amazon.com>\r\nSubject: =?x?Q?\r\n\r\nWhen:",
    ] {
        let _ = c.classify(raw);
    }
    assert_eq!(
        redact("code 1234567890123 and 12"),
        "code 1234567890123 and 12"
    );
    assert_eq!(redact("https://a.b/c 9999"), "[link] [code]");
}

#[test]
fn chinese_and_russian_charsets_are_decoded() {
    let c = Catalogue::builtin();
    let gb: &[u8] = b"From: TikTok Shop <no-reply@mail.tiktokglobalshop.com>\x0d\x0aSubject: =?gb18030?B?VGlrVG9rIFNob3DJzLzS0enWpMLr?=\x0d\x0aMIME-Version: 1.0\x0d\x0aContent-Type: text/plain; charset=gb18030\x0d\x0aContent-Transfer-Encoding: 8bit\x0d\x0a\x0d\x0a\xc4\xfa\xd5\xfd\xd4\xda\xbd\xf8\xd0\xd0\xd3\xca\xcf\xe4\xd1\xe9\xd6\xa4\xa3\xac\xc7\xeb\xd4\xda\xd1\xe9\xd6\xa4\xc2\xeb\xca\xe4\xc8\xeb\xbf\xf2\xd6\xd0\xca\xe4\xc8\xeb 654321\x0d\x0a";
    let got = c.classify(gb).unwrap();
    assert_eq!(got.event, Some(MailEvent::OtpRequested), "{got:?}");
    assert_eq!(got.subject, "TikTok Shop商家验证码");
    let koi: &[u8] = b"From: =?utf-8?B?0K/QvdC00LXQutGBIElE?= <noreply@id.yandex.ru>\x0d\x0aSubject: =?koi8-r?B?69TPLdTPINfIz8TJ1CDXIPfB2yDBy8vB1c7U?=\x0d\x0aMIME-Version: 1.0\x0d\x0aContent-Type: text/plain; charset=koi8-r\x0d\x0aContent-Transfer-Encoding: 8bit\x0d\x0a\x0d\x0a\xeb\xd4\xcf-\xd4\xcf \xd7\xd7\xa3\xcc \xd0\xd2\xc1\xd7\xc9\xcc\xd8\xce\xd9\xca \xd0\xc1\xd2\xcf\xcc\xd8 \xcf\xd4 \xc1\xcb\xcb\xc1\xd5\xce\xd4\xc1 seller.\x0a\xed\xc5\xd3\xd4\xcf: \xed\xcf\xd3\xcb\xd7\xc1\x0d\x0a";
    let got = c.classify(koi).unwrap();
    assert_eq!(got.event, Some(MailEvent::NewSignIn), "{got:?}");
    assert_eq!(got.facts[0], ("Место".into(), "Москва".into()));
}
