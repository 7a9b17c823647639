use proptest::prelude::*;

use super::*;

fn cfg() -> CardsConfig {
    CardsConfig::default()
}

fn full() -> Card {
    Card {
        owner: None,
        friends_only: true,
        portrait: Some(Portrait::Inline {
            content_type: "image/png".into(),
            bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3],
        }),
        name: "Zoë Liu, \"Li\"; Jr.".into(),
        nickname: Some("Zo; z,z".into()),
        gender: Some(Gender::Female),
        age: Some(30),
        birth_date: Some("1994-03-21".into()),
        zodiac: Some("aries".into()),
        location: Some("Beijing, Chaoyang; 北京".into()),
        quotation: Some("Stay hungry,\nstay foolish; <always> & more".into()),
        addresses: vec![
            "sms:+8613800000001".into(),
            "mail:zoe@example.org".into(),
            "im:zoe@im.example.org".into(),
        ],
    }
}

#[test]
fn a_full_card_goes_to_xml_and_back() {
    let c = full();
    c.validate(&cfg()).unwrap();
    let xml = xml::to_xml(&c);
    assert_eq!(xml::parse(&xml, &cfg()).unwrap(), c, "{xml}");
}

#[test]
fn a_full_card_goes_to_vcard_and_back() {
    let c = full();
    let v = vcard::to_vcard(&c);
    assert!(v.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\n"), "{v}");
    let back = vcard::from_vcard(&v).unwrap();
    assert_eq!(back, c, "{v}");
}

fn refused(xml: &str) -> CardError {
    xml::parse(xml, &cfg()).unwrap_err()
}

#[test]
fn bad_cards_are_refused_with_the_field_named() {
    let ns = NS;
    assert_eq!(
        refused(&format!("<card xmlns='{ns}'><nickname>x</nickname></card>")).field,
        "name"
    );
    let e = refused(&format!(
        "<card xmlns='{ns}'><name>A</name><birthdate>1994-02-30</birthdate></card>"
    ));
    assert_eq!(e.field, "birthdate", "{e}");
    let e = refused(&format!(
        "<!DOCTYPE card [<!ENTITY x 'y'>]><card xmlns='{ns}'><name>&x;</name></card>"
    ));
    assert_eq!(e.field, "card");
    assert!(e.problem.contains("DTD"), "{e}");
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><name>A</name><age>200</age></card>"
        ))
        .field,
        "age"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><name>A</name><zodiac>dragon</zodiac></card>"
        ))
        .field,
        "zodiac"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><name>A</name><gender>x</gender></card>"
        ))
        .field,
        "gender"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><name>A</name><address>app:x</address></card>"
        ))
        .field,
        "address"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><age>3</age><name>A</name></card>"
        ))
        .field,
        "name"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><name>A</name><name>B</name></card>"
        ))
        .field,
        "name"
    );
    assert_eq!(
        refused(&format!("<card xmlns='{ns}'><name>A<b/></name></card>")).field,
        "name"
    );
    assert_eq!(refused("<card><name>A</name></card>").field, "card");
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><portrait type='image/bmp'>AAAA</portrait><name>A</name></card>"
        ))
        .field,
        "portrait"
    );
    assert_eq!(
        refused(&format!(
            "<card xmlns='{ns}'><portrait url='ftp://x'/><name>A</name></card>"
        ))
        .field,
        "portrait"
    );
    assert_eq!(
        refused(&format!("<card xmlns='{ns}'><name>  </name></card>")).field,
        "name"
    );
    assert_eq!(
        refused(&format!("<card xmlns='{ns}'><name>A</name><extra/></card>")).field,
        "card"
    );
}

#[test]
fn the_sms_text_keeps_whole_lines_within_the_parts() {
    let mut c = full();
    c.quotation = Some("q".repeat(400));
    let one = sms_text(&c, 1);
    assert!(one.starts_with("Card: Zoë Liu"));
    assert_eq!(crate::content::sms::segment(&one).parts.len(), 1);
    assert!(one.contains("Tel: +8613800000001"));
    assert!(!one.contains("qqq"), "the quotation does not fit one part");
    let many = sms_text(&c, 10);
    assert!(many.contains(&"q".repeat(400)));
}

#[test]
fn a_vcard_part_becomes_a_card_and_keeps_the_other_parts() {
    let mut content = Content {
        text: "here is Zoë".into(),
        parts: vec![
            Part {
                content_type: "application/octet-stream".into(),
                name: Some("zoe.vcf".into()),
                bytes: vcard::to_vcard(&full()).into_bytes(),
            },
            Part {
                content_type: "application/pdf".into(),
                name: Some("cv.pdf".into()),
                bytes: b"%PDF".to_vec(),
            },
        ],
        ..Content::default()
    };
    assert_eq!(recognise(&mut content, &cfg()), Ok(true));
    assert_eq!(content.card.as_ref().unwrap().name, full().name);
    assert!(content.text.starts_with("here is Zoë\n\nCard: Zoë Liu"));
    let types: Vec<&str> = content
        .parts
        .iter()
        .map(|p| p.content_type.as_str())
        .collect();
    assert_eq!(types, ["text/vcard", "image/png", "application/pdf"]);
    // A vCard that is not a valid card stays an attachment.
    let mut bad = Content {
        parts: vec![Part {
            content_type: "text/vcard".into(),
            name: None,
            bytes: b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nX-AGE:old\r\nEND:VCARD\r\n".to_vec(),
        }],
        ..Content::default()
    };
    assert_eq!(recognise(&mut bad, &cfg()).unwrap_err().field, "age");
    assert!(bad.card.is_none());
    assert_eq!(bad.parts.len(), 1);
}

#[test]
fn config_checks() {
    assert!(cfg().validate().is_empty());
    let c = CardsConfig {
        max_card_bytes: 10,
        ..cfg()
    };
    assert!(c.validate()[0].starts_with("cards.max_card_bytes"));
}

/// Text a person may write in a field: non-ASCII letters, commas, semicolons, backslashes,
/// quotes and line breaks.
fn field(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        "[a-zA-Z0-9éüßЖж北京語 ,;:\\\\\"'<>&\\n]{{1,{max}}}"
    ))
    .unwrap()
    .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn name() -> impl Strategy<Value = String> {
    field(60)
        .prop_map(|s| s.replace('\n', " "))
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

prop_compose! {
    fn any_card()(
        name in name(),
        nickname in proptest::option::of(field(40)),
        gender in proptest::option::of(0usize..4),
        age in proptest::option::of(0u8..=150),
        bday in proptest::option::of((1900i32..2020, 1u32..=12, 1u32..=28)),
        zodiac in proptest::option::of(0usize..12),
        location in proptest::option::of(field(80)),
        quotation in proptest::option::of(field(200)),
        friends_only in any::<bool>(),
        phone in proptest::option::of(10_000_000u64..99_999_999),
        portrait in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
    ) -> Card {
        Card {
            owner: None,
            friends_only,
            portrait: portrait.map(|bytes| Portrait::Inline { content_type: "image/jpeg".into(), bytes }),
            name,
            nickname,
            gender: gender.map(|g| Gender::ALL[g]),
            age,
            birth_date: bday.map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
            zodiac: zodiac.map(|z| ZODIAC[z].to_string()),
            location,
            quotation,
            addresses: phone.map(|p| vec![format!("sms:+86138{p}"), "mail:x@example.org".into()]).unwrap_or_default(),
        }
    }
}

proptest! {
    #[test]
    fn card_to_vcard_to_card_keeps_every_field(card in any_card()) {
        card.validate(&cfg()).unwrap();
        let v = vcard::to_vcard(&card);
        let back = vcard::from_vcard(&v).unwrap();
        prop_assert_eq!(&back, &card, "{}", v);
        back.validate(&cfg()).unwrap();
    }

    #[test]
    fn card_to_xml_to_card_keeps_every_field(card in any_card()) {
        let x = xml::to_xml(&card);
        let back = xml::parse(&x, &cfg()).unwrap();
        prop_assert_eq!(back, card, "{}", x);
    }
}

#[test]
fn a_vcard_whose_birthday_breaks_the_parser_is_refused_not_a_panic() {
    let v = include_str!("../../fuzz/seeds/card/bday_panic.vcf");
    assert_eq!(vcard::from_vcard(v).unwrap_err().field, "card");
}

#[test]
fn a_vcard_whose_uri_breaks_the_uri_parser_is_refused_not_a_panic() {
    // What the `card` fuzz target found (a seed of it now).
    let v = include_str!("../../fuzz/seeds/card/uri_panic.vcf");
    match vcard::from_vcard(v) {
        Ok(card) => assert!(card.addresses.iter().all(|a| a.starts_with("sms:"))),
        Err(e) => assert_eq!(e.field, "card", "{e}"),
    }
}
