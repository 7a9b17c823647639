use super::config::GroupConfig;
use super::*;

fn addr(s: &str) -> Address {
    Address::parse_user(s).unwrap()
}

fn dir() -> Directory {
    Directory::new(&DirectoryConfig {
        opt_outs: vec!["sms:+8613800000009".into()],
        groups: vec![GroupConfig {
            name: "team".into(),
            members: vec![
                "sms:+8613800000001".into(),
                "mail:bob@example.org".into(),
                "not an address".into(),
            ],
        }],
        ..DirectoryConfig::default()
    })
}

fn user(id: &str, name: &str, addrs: &[&str]) -> User {
    User {
        id: id.into(),
        name: name.into(),
        addresses: addrs.iter().map(|a| addr(a)).collect(),
        friends: Vec::new(),
        friends_only: false,
        card: None,
    }
}

fn group(id: &str, members: Vec<Member>) -> Group {
    Group {
        id: id.into(),
        name: format!("Team {id}"),
        creator: None,
        admins: Vec::new(),
        members,
        limit: 0,
    }
}

/// alice (IM + phone), bob (mail), carol (phone); A = {alice, bob, carol's phone},
/// B = {A, dave's phone}.
fn nested() -> Snapshot {
    let s = Snapshot::default();
    let s = s
        .put_user(
            "alice",
            user(
                "",
                "Alice",
                &["im:alice@im.example.org", "sms:+8613800000001"],
            ),
            true,
        )
        .unwrap()
        .snap;
    let s = s
        .put_user("bob", user("", "Bob", &["mail:bob@example.org"]), true)
        .unwrap()
        .snap;
    let s = s
        .put_group(
            "A",
            group(
                "",
                vec![
                    Member::User("alice".into()),
                    Member::User("bob".into()),
                    Member::Address(addr("sms:+8613800000003")),
                ],
            ),
            true,
        )
        .unwrap()
        .snap;
    s.put_group(
        "B",
        group(
            "",
            vec![
                Member::Group("A".into()),
                Member::Address(addr("sms:+8613800000004")),
            ],
        ),
        true,
    )
    .unwrap()
    .snap
}

#[test]
fn groups_expand_in_order_each_address_once() {
    let d = dir();
    let to = vec![
        addr("mail:bob@example.org"),
        addr("group:team"),
        addr("sms:+8613800000001"),
    ];
    let got = d.expand(&to, None).unwrap();
    assert_eq!(
        got,
        vec![
            (addr("mail:bob@example.org"), 0),
            (addr("sms:+8613800000001"), 1),
        ]
    );
    assert!(d.has_group("team"));
    assert!(!d.has_group("other"));
}

#[test]
fn an_unknown_group_is_named_with_its_place() {
    let to = vec![addr("sms:+8613800000001"), addr("group:nobody")];
    assert_eq!(
        dir().expand(&to, None),
        Err(UnknownGroup {
            index: 1,
            name: "nobody".into()
        })
    );
}

#[test]
fn opt_outs_are_read_as_addresses() {
    let d = dir();
    assert!(d.opted_out(&addr("sms:+8613800000009")));
    assert!(!d.opted_out(&addr("sms:+8613800000001")));
}

#[test]
fn nested_groups_fan_out_to_each_person_once_without_the_speaker() {
    let d = dir();
    d.install(nested());
    let all = d.expand(&[addr("group:B")], None).unwrap();
    let got: Vec<String> = all.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(
        got,
        [
            "im:alice@im.example.org",
            "mail:bob@example.org",
            "sms:+8613800000003",
            "sms:+8613800000004"
        ]
    );
    // Alice speaks from her phone: she is one person, so neither address gets it.
    let without = d
        .expand(&[addr("group:B")], Some(&addr("sms:+8613800000001")))
        .unwrap();
    assert_eq!(without.len(), 3);
    assert!(
        without
            .iter()
            .all(|(a, _)| a.value() != "alice@im.example.org")
    );
    assert!(
        d.check_member("B", &addr("im:alice@im.example.org/phone"))
            .is_ok()
    );
    assert_eq!(
        d.check_member("B", &addr("sms:+8613900000000"))
            .unwrap_err()
            .code(),
        "not_a_member"
    );
    // The outer group lists the inner one as a single member.
    assert_eq!(d.snapshot().groups["B"].members.len(), 2);
}

#[test]
fn a_cycle_is_refused_when_it_would_be_made() {
    let s = nested();
    let mut a = s.groups["A"].clone();
    a.members.push(Member::Group("B".into()));
    let e = s.put_group("A", a, false).unwrap_err();
    assert_eq!(e.code, "cycle");
    assert!(e.message.contains("A → B → A"), "{}", e.message);
    let e = s
        .put_group("C", group("", vec![Member::Group("C".into())]), true)
        .unwrap_err();
    assert_eq!(e.code, "cycle");
}

#[test]
fn bad_changes_get_their_codes() {
    let s = nested();
    let code = |r: Result<ops::Plan, DirError>| r.unwrap_err().code;
    assert_eq!(
        code(s.put_group("C", group("", vec![Member::User("zed".into())]), true)),
        "unknown_member"
    );
    assert_eq!(
        code(s.put_group(
            "C",
            group("", vec![Member::Address(addr("app:weather"))]),
            true
        )),
        "invalid_member"
    );
    assert_eq!(
        code(s.put_user("bob", user("", "Bob", &["mail:bob@example.org"]), true)),
        "duplicate_id"
    );
    assert_eq!(
        code(s.put_user("eve", user("", "Eve", &["mail:bob@example.org"]), true)),
        "address_taken"
    );
    let mut full = group(
        "",
        vec![Member::User("alice".into()), Member::User("bob".into())],
    );
    full.limit = 1;
    let e = s.put_group("C", full, true).unwrap_err();
    assert_eq!(e.code, "over_limit");
    assert!(e.message.contains("at most 1"));
    assert_eq!(code(s.delete_user("alice")), "in_use");
    assert_eq!(code(s.delete_group("A")), "in_use");
    assert_eq!(code(s.delete_group("nope")), "not_found");
    assert_eq!(
        code(s.put_group(
            "C",
            group(
                "",
                vec![
                    Member::User("bob".into()),
                    Member::Address(addr("mail:bob@example.org"))
                ]
            ),
            true
        )),
        "duplicate_member"
    );
}

#[test]
fn join_requests_tell_the_admins_then_the_requester() {
    let s = nested();
    let s = s
        .put_user("carol", user("", "Carol", &["sms:+8613800000005"]), true)
        .unwrap()
        .snap;
    let mut a = s.groups["A"].clone();
    a.creator = Some("alice".into());
    a.admins = vec!["bob".into()];
    a.limit = 4;
    let s = s.put_group("A", a, false).unwrap().snap;
    let p = s
        .request_join("A", Member::User("carol".into()), "carol", "r1", 1)
        .unwrap();
    let told: Vec<String> = p.notices.iter().map(|n| n.to.to_string()).collect();
    assert_eq!(told, ["im:alice@im.example.org", "mail:bob@example.org"]);
    let s = p.snap;
    let p = s.decide("A", "r1", true).unwrap();
    assert_eq!(p.notices.len(), 1);
    assert_eq!(p.notices[0].to, addr("sms:+8613800000005"));
    assert!(p.notices[0].text.contains("approved"));
    let s = p.snap;
    assert_eq!(s.groups["A"].members.len(), 4);
    assert_eq!(
        s.decide("A", "r1", false).unwrap_err().code,
        "already_decided"
    );
    // Full now: the next request is told the limit.
    let s = s
        .put_user("dan", user("", "Dan", &["sms:+8613800000006"]), true)
        .unwrap()
        .snap;
    let e = s
        .request_join("A", Member::User("dan".into()), "dan", "r2", 2)
        .unwrap_err();
    assert_eq!(e.code, "over_limit");
    assert!(e.message.contains("at most 4"));
}

#[test]
fn a_second_request_for_a_member_is_not_approved() {
    let s = nested();
    let s = s
        .put_user("carol", user("", "Carol", &["sms:+8613800000005"]), true)
        .unwrap()
        .snap;
    let carol = Member::User("carol".into());
    let s = s
        .request_join("A", carol.clone(), "carol", "r1", 1)
        .unwrap()
        .snap;
    assert_eq!(
        s.request_join("A", carol.clone(), "carol", "r2", 1)
            .unwrap_err()
            .code,
        "already_requested"
    );
    // Meanwhile the operator puts carol in directly: the pending request cannot add her twice.
    let mut a = s.groups["A"].clone();
    a.members.push(carol.clone());
    let s = s.put_group("A", a, false).unwrap().snap;
    assert_eq!(
        s.decide("A", "r1", true).unwrap_err().code,
        "already_member"
    );
    let listed = s.groups["A"].members.iter().filter(|m| **m == carol);
    assert_eq!(listed.count(), 1);
    // Refusing it is still possible.
    assert!(s.decide("A", "r1", false).is_ok());
}

#[test]
fn a_group_joining_tells_every_person_inside() {
    let s = nested();
    let mut a = s.groups["A"].clone();
    a.creator = Some("alice".into());
    let s = s.put_group("A", a, false).unwrap().snap;
    let s = s
        .put_group("C", group("", vec![Member::User("bob".into())]), true)
        .unwrap()
        .snap;
    // Bob is no admin of A: he may not ask for it.
    assert_eq!(
        s.request_join("C", Member::Group("A".into()), "bob", "r1", 1)
            .unwrap_err()
            .code,
        "not_an_admin"
    );
    // B holds A: A joining B again is "already a member"; B joining A is a cycle.
    let mut b = s.groups["B"].clone();
    b.creator = Some("alice".into());
    let s = s.put_group("B", b, false).unwrap().snap;
    assert_eq!(
        s.request_join("A", Member::Group("B".into()), "alice", "r1", 1)
            .unwrap_err()
            .code,
        "cycle"
    );
    let s = s
        .request_join("C", Member::Group("A".into()), "alice", "r2", 1)
        .unwrap()
        .snap;
    let p = s.decide("C", "r2", true).unwrap();
    let told: HashSet<String> = p.notices.iter().map(|n| n.to.to_string()).collect();
    for who in [
        "im:alice@im.example.org",
        "mail:bob@example.org",
        "sms:+8613800000003",
    ] {
        assert!(told.contains(who), "{who} not told: {told:?}");
    }
}

#[test]
fn senders_and_friends_follow_the_policy() {
    let d = dir();
    let mut s = nested();
    let mut bob = s.users["bob"].clone();
    bob.friends_only = true;
    bob.friends = vec!["alice".into()];
    s = s.put_user("bob", bob, false).unwrap().snap;
    d.install(s);
    assert!(
        d.check_sender(&addr("im:alice@im.example.org/x"), Door::Xmpp)
            .is_ok()
    );
    assert_eq!(
        d.check_sender(&addr("im:mallory@im.example.org"), Door::Xmpp)
            .unwrap_err()
            .code(),
        "unknown_sender"
    );
    assert!(
        d.check_sender(&addr("mail:anyone@example.com"), Door::Smtp)
            .is_ok()
    );
    assert!(
        d.check_sender(&addr("sms:+8613999999999"), Door::Sdp)
            .is_ok()
    );
    let bob = addr("mail:bob@example.org");
    assert!(d.may_reach(&addr("sms:+8613800000001"), &bob).is_ok());
    assert_eq!(
        d.may_reach(&addr("sms:+8613999999999"), &bob),
        Err("not_a_friend")
    );
    assert!(d.may_reach(&addr("group:A"), &bob).is_ok());
}

#[test]
fn the_config_explains_a_cycle() {
    let cfg = DirectoryConfig {
        groups: vec![
            GroupConfig {
                name: "a".into(),
                members: vec!["group:b".into()],
            },
            GroupConfig {
                name: "b".into(),
                members: vec!["group:a".into(), "app:x".into()],
            },
        ],
        ..DirectoryConfig::default()
    };
    let e = cfg.validate();
    assert!(e.iter().any(|e| e.contains("a → b → a")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("neither a person")), "{e:?}");
}

#[test]
fn the_seed_file_is_checked_like_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    std::fs::write(
        &path,
        r#"{"users": {"al": {"name": "Al", "addresses": ["sms:+8613800000001"]}},
            "groups": {"a": {"name": "A", "members": [{"user": "al"}, {"group": "b"}]},
                       "b": {"name": "B", "members": [{"group": "a"}]}}}"#,
    )
    .unwrap();
    let cfg = DirectoryConfig {
        file: Some(path.clone()),
        ..DirectoryConfig::default()
    };
    let e = cfg.validate();
    assert!(
        e.iter()
            .any(|e| e.starts_with("directory.file: ") && e.contains("a → b → a")),
        "{e:?}"
    );
    std::fs::write(
        &path,
        r#"{"users": {"al": {"name": "Al", "addresses": []}}}"#,
    )
    .unwrap();
    assert!(cfg.validate().iter().any(|e| e.contains("1-16 addresses")));
    std::fs::write(
        &path,
        r#"{"users": {"al": {"name": "Al", "addresses": ["sms:+8613800000001"]}},
            "groups": {"a": {"name": "A", "members": [{"user": "al"}]},
                       "b": {"name": "B", "members": [{"group": "a"}]}}}"#,
    )
    .unwrap();
    assert_eq!(cfg.validate(), Vec::<String>::new());
    let (users, groups) = Directory::seed_records(&cfg).unwrap();
    let plan = Snapshot::default().seed(users, groups).unwrap();
    assert_eq!(plan.snap.people("b").len(), 1);
}

#[test]
fn a_person_already_inside_or_already_asking_is_refused() {
    let s = nested();
    // Alice is in A, which is in B: she is already inside B.
    assert_eq!(
        s.request_join("B", Member::User("alice".into()), "alice", "r1", 1)
            .unwrap_err()
            .code,
        "already_member"
    );
    let s = s
        .put_user("eve", user("", "Eve", &["sms:+8613800000007"]), true)
        .unwrap()
        .snap;
    let s = s
        .request_join("A", Member::User("eve".into()), "eve", "r2", 1)
        .unwrap()
        .snap;
    assert_eq!(
        s.request_join("A", Member::User("eve".into()), "eve", "r3", 2)
            .unwrap_err()
            .code,
        "already_requested"
    );
}

#[test]
fn seeded_users_may_name_each_other_as_friends() {
    let mut a = user("a", "A", &["im:a@x.org"]);
    a.friends = vec!["b".into()];
    let mut b = user("b", "B", &["im:b@x.org"]);
    b.friends = vec!["a".into()];
    let plan = Snapshot::default().seed(vec![a, b], Vec::new()).unwrap();
    assert_eq!(plan.snap.users["a"].friends, ["b"]);
    assert_eq!(plan.snap.users["b"].friends, ["a"]);
    let docs: Vec<&str> = plan
        .changes
        .iter()
        .filter_map(|c| c.doc.as_deref())
        .collect();
    assert!(
        docs.iter().any(|d| d.contains("\"friends\":[\"b\"]")),
        "{docs:?}"
    );
    let mut c = user("c", "C", &["im:c@x.org"]);
    c.friends = vec!["nobody".into()];
    assert!(Snapshot::default().seed(vec![c], Vec::new()).is_err());
}
