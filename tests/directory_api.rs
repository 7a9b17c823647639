//! The directory on the admin API: users and groups put, read and deleted; bad input refused
//! with its code and nothing stored; the admin token required; join requests and their
//! notices; a group's message reaching every person inside it; records kept over a restart.

mod common;

use common::{ADMIN_TOKEN, Harness, TOKEN, count_rows};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One admin API call with `token` (none: no `Authorization`); status and JSON answer.
async fn call_as(
    h: &Harness,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = h.http.request(method, format!("{}{path}", h.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn call(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_as(h, Some(ADMIN_TOKEN), method, path, body).await
}

async fn put(h: &Harness, path: &str, body: Value) -> (StatusCode, Value) {
    call(h, Method::PUT, path, Some(body)).await
}

async fn get(h: &Harness, path: &str) -> (StatusCode, Value) {
    call(h, Method::GET, path, None).await
}

async fn post(h: &Harness, path: &str, body: Value) -> (StatusCode, Value) {
    call(h, Method::POST, path, Some(body)).await
}

/// A PUT that must succeed (created or replaced).
async fn put_ok(h: &Harness, path: &str, body: Value) -> Value {
    let (status, resp) = put(h, path, body).await;
    assert!(
        status == 200 || status == 201,
        "PUT {path}: {status} {resp}"
    );
    resp
}

fn user(name: &str, addresses: &[&str]) -> Value {
    json!({"name": name, "addresses": addresses, "friends": []})
}

/// A join request that must be made; its id.
async fn join(h: &Harness, group: &str, body: Value) -> String {
    let (status, req) = post(h, &format!("/v1/groups/{group}/join-requests"), body).await;
    assert_eq!(status, 201, "{req}");
    req["id"].as_str().unwrap().to_string()
}

/// Rows of the store's `directory` table.
fn directory_rows(h: &Harness) -> i64 {
    count_rows(&h.cfg.store.path, "directory")
}

/// Asserts an error answer: status and code.
fn refused(got: (StatusCode, Value), status: u16, code: &str) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    got.1
}

/// Waits for an SMS to `phone` (`+86…`) whose text contains `needle`; its text.
async fn sms_with(h: &Harness, phone: &str, needle: &str) -> String {
    common::sms_to(h, phone, |t| t.contains(needle))
        .await
        .message
}

/// How many SMS to `phone` the simulator got whose text contains `needle`.
fn sms_count(h: &Harness, phone: &str, needle: &str) -> usize {
    let tel = format!("tel:{phone}");
    h.sim
        .sim
        .messages()
        .iter()
        .filter(|m| m.addresses.contains(&tel) && m.message.contains(needle))
        .count()
}

#[tokio::test]
async fn users_and_groups_are_put_read_and_deleted() {
    let h = Harness::start(|_, _| {}).await;
    let alice = json!({
        "name": "Alice",
        "addresses": ["sms:+8613800000001", "im:alice@im.example.org"],
        "friends": [],
        "friends_only": true
    });
    let (status, created) = put(&h, "/v1/users/alice", alice.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "alice");
    assert_eq!(created["addresses"], alice["addresses"]);
    assert_eq!(created["friends_only"], true);
    let (status, got) = get(&h, "/v1/users/alice").await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    // Replaced: 200, and the new record is what is read.
    let mut renamed = alice.clone();
    renamed["name"] = json!("Alice Liddell");
    let (status, replaced) = put(&h, "/v1/users/alice", renamed).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(get(&h, "/v1/users/alice").await.1["name"], "Alice Liddell");

    put_ok(&h, "/v1/users/bob", user("Bob", &["sms:+8613800000002"])).await;
    let team = json!({
        "name": "Team",
        "creator": "alice",
        "admins": ["bob"],
        "members": [{"user": "alice"}, {"address": "sms:+8613800000003"}],
        "limit": 10
    });
    let (status, g) = put(&h, "/v1/groups/team", team.clone()).await;
    assert_eq!(status, 201, "{g}");
    let (status, got) = get(&h, "/v1/groups/team").await;
    assert_eq!(status, 200);
    assert_eq!(got, g);
    assert_eq!(got["id"], "team");
    assert_eq!(got["creator"], "alice");
    assert_eq!(got["admins"], json!(["bob"]));
    assert_eq!(got["members"], team["members"]);
    assert_eq!(got["limit"], 10);
    let (status, members) = get(&h, "/v1/groups/team/members").await;
    assert_eq!(status, 200);
    assert_eq!(
        members,
        json!({"members": [
            {"kind": "user", "id": "alice", "name": "Alice Liddell"},
            {"kind": "address", "address": "sms:+8613800000003"}
        ]})
    );

    // A user a group names is not deleted; once the group is gone, it is.
    refused(
        call(&h, Method::DELETE, "/v1/users/alice", None).await,
        409,
        "in_use",
    );
    assert_eq!(get(&h, "/v1/users/alice").await.0, 200);
    let (status, _) = call(&h, Method::DELETE, "/v1/groups/team", None).await;
    assert_eq!(status, 204);
    refused(get(&h, "/v1/groups/team").await, 404, "not_found");
    refused(get(&h, "/v1/groups/team/members").await, 404, "not_found");
    let (status, _) = call(&h, Method::DELETE, "/v1/users/alice", None).await;
    assert_eq!(status, 204);
    refused(get(&h, "/v1/users/alice").await, 404, "not_found");
    refused(
        call(&h, Method::DELETE, "/v1/users/alice", None).await,
        404,
        "not_found",
    );
    refused(
        call(&h, Method::DELETE, "/v1/groups/team", None).await,
        404,
        "not_found",
    );
    // Only bob is left in the store.
    assert_eq!(directory_rows(&h), 1);
    h.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_its_code_and_stores_nothing() {
    let h = Harness::start(|_, _| {}).await;
    put_ok(
        &h,
        "/v1/users/alice",
        user("Alice", &["sms:+8613800000001"]),
    )
    .await;
    put_ok(
        &h,
        "/v1/groups/A",
        json!({"name": "A", "members": [], "limit": 2}),
    )
    .await;
    let rows = directory_rows(&h);
    assert_eq!(rows, 2);

    // A member that is not in the directory.
    refused(
        put(
            &h,
            "/v1/groups/G",
            json!({"name": "G", "members": [{"user": "nobody"}], "limit": 0}),
        )
        .await,
        400,
        "unknown_member",
    );
    refused(
        put(
            &h,
            "/v1/groups/G",
            json!({"name": "G", "members": [{"group": "nowhere"}], "limit": 0}),
        )
        .await,
        400,
        "unknown_member",
    );
    refused(get(&h, "/v1/groups/G").await, 404, "not_found");

    // A member that is neither a person nor a group.
    refused(
        put(
            &h,
            "/v1/groups/G",
            json!({"name": "G", "members": [{"address": "app:x"}], "limit": 0}),
        )
        .await,
        400,
        "invalid_member",
    );
    let e = refused(
        put(
            &h,
            "/v1/groups/G",
            json!({"name": "G", "members": [{"foo": 1}], "limit": 0}),
        )
        .await,
        400,
        "invalid_json",
    );
    assert!(e["message"].as_str().unwrap().contains("foo"), "{e}");
    // Fields a record does not have, and bodies that are not JSON.
    refused(
        put(
            &h,
            "/v1/users/bob",
            json!({"name": "Bob", "addresses": ["sms:+8613800000002"], "colour": "red"}),
        )
        .await,
        400,
        "invalid_json",
    );
    let r = h
        .http
        .put(format!("{}/v1/users/bob", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    refused(get(&h, "/v1/users/bob").await, 404, "not_found");

    // Create-only on a taken id: refused, the stored record unchanged.
    let r = h
        .http
        .put(format!("{}/v1/users/alice", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("If-None-Match", "*")
        .json(&user("Impostor", &["sms:+8613800000009"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "duplicate_id");
    assert_eq!(get(&h, "/v1/users/alice").await.1["name"], "Alice");
    let r = h
        .http
        .put(format!("{}/v1/groups/A", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("If-None-Match", "*")
        .json(&json!({"name": "Other A", "members": [], "limit": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "duplicate_id");
    assert_eq!(get(&h, "/v1/groups/A").await.1["name"], "A");

    // More members than the group's limit.
    put_ok(&h, "/v1/users/bob", user("Bob", &["sms:+8613800000002"])).await;
    let rows = directory_rows(&h);
    let e = refused(
        put(
            &h,
            "/v1/groups/A",
            json!({"name": "A", "limit": 1, "members": [{"user": "alice"}, {"user": "bob"}]}),
        )
        .await,
        400,
        "over_limit",
    );
    assert!(e["message"].as_str().unwrap().contains("at most 1"), "{e}");
    assert_eq!(get(&h, "/v1/groups/A").await.1["members"], json!([]));

    // An address bound to another user.
    let e = refused(
        put(
            &h,
            "/v1/users/carol",
            user("Carol", &["sms:+8613800000001"]),
        )
        .await,
        400,
        "address_taken",
    );
    assert!(e["message"].as_str().unwrap().contains("alice"), "{e}");
    refused(get(&h, "/v1/users/carol").await, 404, "not_found");

    // A cycle: B holds A, so A may not hold B.
    put_ok(
        &h,
        "/v1/groups/B",
        json!({"name": "B", "members": [{"group": "A"}], "limit": 0}),
    )
    .await;
    let rows_with_b = directory_rows(&h);
    assert_eq!(rows_with_b, rows + 1);
    refused(
        put(
            &h,
            "/v1/groups/A",
            json!({"name": "A", "members": [{"group": "B"}], "limit": 0}),
        )
        .await,
        400,
        "cycle",
    );
    assert_eq!(get(&h, "/v1/groups/A").await.1["members"], json!([]));
    // A group that B holds is not deleted.
    refused(
        call(&h, Method::DELETE, "/v1/groups/A", None).await,
        409,
        "in_use",
    );
    assert_eq!(get(&h, "/v1/groups/A").await.0, 200);

    // A join request nobody may make.
    refused(
        post(&h, "/v1/groups/A/join-requests", json!({})).await,
        400,
        "invalid_request",
    );
    refused(
        post(
            &h,
            "/v1/groups/nowhere/join-requests",
            json!({"user": "bob"}),
        )
        .await,
        404,
        "not_found",
    );
    refused(
        post(
            &h,
            "/v1/groups/A/join-requests/0123456789abcdef/approve",
            json!({}),
        )
        .await,
        404,
        "not_found",
    );

    assert_eq!(directory_rows(&h), rows_with_b);
    let metrics = h.metrics().await;
    for reason in [
        "unknown_member",
        "invalid_member",
        "invalid_json",
        "duplicate_id",
        "over_limit",
        "address_taken",
        "cycle",
        "in_use",
        "not_found",
    ] {
        let line = format!("switchboard_admin_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    h.stop().await;
}

#[tokio::test]
async fn every_directory_endpoint_wants_the_admin_token_and_a_small_body() {
    let h = Harness::start(|cfg, _| cfg.http.max_body_bytes = 1024).await;
    put_ok(
        &h,
        "/v1/users/alice",
        user("Alice", &["sms:+8613800000001"]),
    )
    .await;
    put_ok(
        &h,
        "/v1/groups/A",
        json!({"name": "A", "creator": "alice", "members": [], "limit": 0}),
    )
    .await;
    let rows = directory_rows(&h);
    let small = user("Bob", &["sms:+8613800000002"]);
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::PUT, "/v1/users/bob", Some(small.clone())),
        (Method::GET, "/v1/users/alice", None),
        (Method::DELETE, "/v1/users/alice", None),
        (
            Method::PUT,
            "/v1/groups/G",
            Some(json!({"name": "G", "members": [], "limit": 0})),
        ),
        (Method::GET, "/v1/groups/A", None),
        (Method::DELETE, "/v1/groups/A", None),
        (Method::GET, "/v1/groups/A/members", None),
        (
            Method::POST,
            "/v1/groups/A/join-requests",
            Some(json!({"user": "alice"})),
        ),
        (
            Method::POST,
            "/v1/groups/A/join-requests/0123456789abcdef/approve",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/groups/A/join-requests/0123456789abcdef/refuse",
            Some(json!({})),
        ),
    ];
    for (method, path, body) in &calls {
        let what = format!("{method} {path}");
        let r = call_as(&h, None, method.clone(), path, body.clone()).await;
        assert_eq!(r.0, 401, "{what} without a token: {}", r.1);
        assert_eq!(r.1["code"], "unauthorized", "{what}");
        let r = call_as(
            &h,
            Some("no-such-token-000"),
            method.clone(),
            path,
            body.clone(),
        )
        .await;
        assert_eq!(r.0, 401, "{what} with an unknown token: {}", r.1);
        let r = call_as(&h, Some(TOKEN), method.clone(), path, body.clone()).await;
        assert_eq!(r.0, 403, "{what} with a submit token: {}", r.1);
        assert_eq!(r.1["code"], "admin_only", "{what}");
        if body.is_some() {
            let r = h
                .http
                .request(method.clone(), format!("{}{path}", h.base))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(format!("{{\"name\": \"{}\"}}", "x".repeat(2048)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413, "{what} with a large body");
            assert_eq!(
                r.json::<Value>().await.unwrap()["code"],
                "payload_too_large",
                "{what}"
            );
        }
    }
    assert_eq!(directory_rows(&h), rows);
    assert_eq!(get(&h, "/v1/users/alice").await.0, 200);
    assert_eq!(get(&h, "/v1/groups/A").await.0, 200);
    refused(get(&h, "/v1/users/bob").await, 404, "not_found");
    let metrics = h.metrics().await;
    for reason in ["unauthorized", "admin_only", "payload_too_large"] {
        let line = format!("switchboard_admin_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    h.stop().await;
}

#[tokio::test]
async fn join_requests_tell_the_admins_and_the_requester() {
    let h = Harness::start(|_, _| {}).await;
    for (id, name, phone) in [
        ("alice", "Alice", "+8613800000101"),
        ("bob", "Bob", "+8613800000102"),
        ("carol", "Carol", "+8613800000103"),
        ("dave", "Dave", "+8613800000104"),
        ("erin", "Erin", "+8613800000105"),
        ("gina", "Gina", "+8613800000107"),
    ] {
        put_ok(
            &h,
            &format!("/v1/users/{id}"),
            user(name, &[&format!("sms:{phone}")]),
        )
        .await;
    }
    put_ok(
        &h,
        "/v1/users/frank",
        user("Frank", &["im:frank@im.example.org", "sms:+8613800000106"]),
    )
    .await;
    put_ok(
        &h,
        "/v1/groups/team",
        json!({"name": "Team", "creator": "alice", "admins": ["bob", "dave"], "members": [], "limit": 2}),
    )
    .await;
    put_ok(
        &h,
        "/v1/groups/A",
        json!({
            "name": "Group A",
            "creator": "erin",
            "members": [{"user": "erin"}, {"user": "frank"}, {"address": "sms:+8613800000108"}],
            "limit": 0
        }),
    )
    .await;

    // Carol asks: the creator and both admins are told.
    let (status, req) = post(
        &h,
        "/v1/groups/team/join-requests",
        json!({"user": "carol"}),
    )
    .await;
    assert_eq!(status, 201, "{req}");
    let rid = req["id"].as_str().unwrap().to_string();
    assert_eq!(rid.len(), 16, "{req}");
    assert!(
        rid.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{rid}"
    );
    assert_eq!(req["group"], "team");
    assert_eq!(req["member"], json!({"user": "carol"}));
    assert_eq!(req["by"], "carol");
    assert_eq!(req["state"], "pending");
    for phone in ["+8613800000101", "+8613800000102", "+8613800000104"] {
        let text = sms_with(&h, phone, &rid).await;
        assert!(text.contains("Carol"), "{text}");
    }

    // Refused: Carol is told, the group is unchanged, and it is decided for good.
    let (status, r) = post(
        &h,
        &format!("/v1/groups/team/join-requests/{rid}/refuse"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "refused");
    let text = sms_with(&h, "+8613800000103", "refused").await;
    assert!(text.contains(&rid), "{text}");
    assert_eq!(get(&h, "/v1/groups/team").await.1["members"], json!([]));
    refused(
        post(
            &h,
            &format!("/v1/groups/team/join-requests/{rid}/approve"),
            json!({}),
        )
        .await,
        409,
        "already_decided",
    );
    refused(
        post(
            &h,
            &format!("/v1/groups/A/join-requests/{rid}/approve"),
            json!({}),
        )
        .await,
        404,
        "not_found",
    );

    // Asked again; asking once more while that is pending is refused; the pending one is
    // approved (with no body): Carol is told and listed once.
    let rid2 = join(&h, "team", json!({"user": "carol"})).await;
    assert_ne!(rid2, rid);
    refused(
        post(
            &h,
            "/v1/groups/team/join-requests",
            json!({"user": "carol"}),
        )
        .await,
        400,
        "already_requested",
    );
    let r = h
        .http
        .post(format!(
            "{}/v1/groups/team/join-requests/{rid2}/approve",
            h.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "approved");
    let text = sms_with(&h, "+8613800000103", "approved").await;
    assert!(text.contains(&rid2), "{text}");
    let (_, members) = get(&h, "/v1/groups/team/members").await;
    assert_eq!(
        members["members"],
        json!([{"kind": "user", "id": "carol", "name": "Carol"}])
    );
    refused(
        post(
            &h,
            "/v1/groups/team/join-requests",
            json!({"user": "carol"}),
        )
        .await,
        400,
        "already_member",
    );
    refused(
        post(
            &h,
            &format!("/v1/groups/team/join-requests/{rid2}/approve"),
            json!({}),
        )
        .await,
        409,
        "already_decided",
    );
    assert_eq!(
        get(&h, "/v1/groups/team").await.1["members"],
        json!([{"user": "carol"}])
    );

    // A group asks, by someone who may not speak for it, then by its creator.
    refused(
        post(
            &h,
            "/v1/groups/team/join-requests",
            json!({"group": "A", "by": "gina"}),
        )
        .await,
        400,
        "not_an_admin",
    );
    let (status, req) = post(
        &h,
        "/v1/groups/team/join-requests",
        json!({"group": "A", "by": "erin"}),
    )
    .await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["member"], json!({"group": "A"}));
    let rid3 = req["id"].as_str().unwrap().to_string();
    let text = sms_with(&h, "+8613800000101", &rid3).await;
    assert!(text.contains("Group A"), "{text}");
    let (status, r) = post(
        &h,
        &format!("/v1/groups/team/join-requests/{rid3}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    // Every person inside A is told: Erin (who asked), Frank at his first address (IM),
    // and the phone with no user.
    sms_with(&h, "+8613800000105", "approved").await;
    h.hooks
        .wait("im", "the notice to Frank", |v| {
            v["to"] == "im:frank@im.example.org"
                && v["text"].as_str().is_some_and(|t| t.contains("has joined"))
        })
        .await;
    sms_with(&h, "+8613800000108", "has joined").await;
    let (_, members) = get(&h, "/v1/groups/team/members").await;
    assert_eq!(
        members["members"],
        json!([
            {"kind": "user", "id": "carol", "name": "Carol"},
            {"kind": "group", "id": "A", "name": "Group A"}
        ])
    );

    // Team now holds A, so A may not take Team.
    put_ok(
        &h,
        "/v1/groups/A",
        json!({
            "name": "Group A",
            "creator": "erin",
            "admins": ["alice"],
            "members": [{"user": "erin"}, {"user": "frank"}, {"address": "sms:+8613800000108"}],
            "limit": 0
        }),
    )
    .await;
    refused(
        post(
            &h,
            "/v1/groups/A/join-requests",
            json!({"group": "team", "by": "alice"}),
        )
        .await,
        400,
        "cycle",
    );

    // Team is full: Gina is refused, told the limit, and nothing is stored.
    let rows = directory_rows(&h);
    let e = refused(
        post(&h, "/v1/groups/team/join-requests", json!({"user": "gina"})).await,
        400,
        "over_limit",
    );
    assert!(e["message"].as_str().unwrap().contains("at most 2"), "{e}");
    assert_eq!(directory_rows(&h), rows);
    assert_eq!(sms_count(&h, "+8613800000101", "Gina"), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_message_to_a_nested_group_reaches_every_person_once() {
    let h = Harness::start(|_, _| {}).await;
    put_ok(&h, "/v1/users/p1", user("P1", &["sms:+8613800000201"])).await;
    put_ok(&h, "/v1/users/p2", user("P2", &["sms:+8613800000202"])).await;
    put_ok(
        &h,
        "/v1/users/ivan",
        user("Ivan", &["im:ivan@im.example.org", "sms:+8613800000203"]),
    )
    .await;
    put_ok(
        &h,
        "/v1/groups/A",
        json!({
            "name": "Inner",
            "members": [{"user": "p1"}, {"user": "ivan"}, {"address": "sms:+8613800000204"}],
            "limit": 0
        }),
    )
    .await;
    // P1 is in B directly and through A: still one person.
    put_ok(
        &h,
        "/v1/groups/B",
        json!({
            "name": "Outer",
            "members": [{"user": "p2"}, {"group": "A"}, {"user": "p1"}],
            "limit": 0
        }),
    )
    .await;
    let (_, members) = get(&h, "/v1/groups/B/members").await;
    assert_eq!(
        members,
        json!({"members": [
            {"kind": "user", "id": "p2", "name": "P2"},
            {"kind": "group", "id": "A", "name": "Inner"},
            {"kind": "user", "id": "p1", "name": "P1"}
        ]})
    );

    let (status, resp) = h
        .submit(json!({"from": "app:wx1234", "to": ["group:B"], "text": "all hands"}))
        .await;
    assert_eq!(status, 202, "{resp}");
    // Four people: P2, P1 (once), Ivan, and the phone with no user.
    assert_eq!(resp["recipients"].as_array().unwrap().len(), 4, "{resp}");
    for phone in ["+8613800000201", "+8613800000202", "+8613800000204"] {
        sms_with(&h, phone, "all hands").await;
    }
    h.hooks
        .wait("im", "the message to Ivan", |v| {
            v["to"] == "im:ivan@im.example.org" && v["text"] == "all hands"
        })
        .await;
    for phone in ["+8613800000201", "+8613800000202", "+8613800000204"] {
        assert_eq!(sms_count(&h, phone, "all hands"), 1, "{phone}");
    }
    assert_eq!(sms_count(&h, "+8613800000203", "all hands"), 0);
    let to_ivan = h
        .hooks
        .posted("im")
        .iter()
        .filter(|v| v["to"] == "im:ivan@im.example.org")
        .count();
    assert_eq!(to_ivan, 1);
    h.stop().await;
}

#[tokio::test]
async fn the_directory_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let on_db = |db: std::path::PathBuf| {
        move |cfg: &mut switchboard::config::Config, _: &mut _| {
            cfg.store.path = db;
        }
    };
    let h = Harness::start(on_db(db.clone())).await;
    let alice = put_ok(
        &h,
        "/v1/users/alice",
        json!({"name": "Alice", "addresses": ["sms:+8613800000301"], "friends": [], "friends_only": true}),
    )
    .await;
    let bob = put_ok(
        &h,
        "/v1/users/bob",
        json!({"name": "Bob", "addresses": ["mail:bob@example.com"], "friends": ["alice"]}),
    )
    .await;
    let a = put_ok(
        &h,
        "/v1/groups/A",
        json!({"name": "A", "creator": "alice", "members": [{"user": "bob"}], "limit": 5}),
    )
    .await;
    let b = put_ok(
        &h,
        "/v1/groups/B",
        json!({"name": "B", "admins": ["bob"], "members": [{"group": "A"}, {"address": "sms:+8613800000302"}], "limit": 0}),
    )
    .await;
    let (status, req) = post(&h, "/v1/groups/B/join-requests", json!({"user": "alice"})).await;
    assert_eq!(status, 201, "{req}");
    let rid = req["id"].as_str().unwrap().to_string();
    h.stop().await;

    let h = Harness::start(on_db(db.clone())).await;
    assert_eq!(get(&h, "/v1/users/alice").await, (StatusCode::OK, alice));
    assert_eq!(get(&h, "/v1/users/bob").await, (StatusCode::OK, bob));
    assert_eq!(get(&h, "/v1/groups/A").await, (StatusCode::OK, a));
    assert_eq!(get(&h, "/v1/groups/B").await, (StatusCode::OK, b));
    // The pending request is still there to decide.
    let (status, r) = post(
        &h,
        &format!("/v1/groups/B/join-requests/{rid}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "approved");
    h.stop().await;
}
