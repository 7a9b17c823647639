//! Micro benchmarks: the Parlay X SOAP encoder and decoders, and the store's enqueue path
//! (an envelope committed with `synchronous = "full"`, one at a time and 256 at once, which
//! shows the group commit).
//!
//! `cargo bench --bench micro`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::address::Address;
use switchboard::config::StoreConfig;
use switchboard::connectors::sdp::parlayx::{
    self, DeliveryStatus, ReceiptRequest, RequestHeader, SendSms, Version,
};
use switchboard::message::{Content, Envelope, IdGen, Kind, Recipient, now_ms};
use switchboard::store::Store;

fn send_sms() -> SendSms {
    SendSms {
        addresses: vec!["tel:+8613800001234".into()],
        sender_name: Some("106580001".into()),
        message: "Your parcel 4711 arrives today between 10:00 and 12:00 <ok> & thanks".into(),
        receipt_request: Some(ReceiptRequest {
            endpoint: "http://10.0.0.5:8080/parlayx/SmsNotification".into(),
            interface_name: "SmsNotification".into(),
            correlator: "0190a4b2c3d4e5f6-0".into(),
        }),
        header: Some(RequestHeader::with_password(
            "000201",
            "secret",
            "35000001000001",
            "20240101120000",
            "tel:+8613800001234",
            "tel:+8613800001234",
        )),
    }
}

fn soap(c: &mut Criterion) {
    let req = send_sms();
    let encoded = parlayx::encode_send_sms(Version::V2_2, &req);
    let receipt = parlayx::encode_notify_delivery_receipt(
        Version::V2_2,
        "0190a4b2c3d4e5f6-0",
        "tel:+8613800001234",
        DeliveryStatus::DeliveredToTerminal,
    );
    let mut g = c.benchmark_group("parlayx");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_send_sms", |b| {
        b.iter(|| parlayx::encode_send_sms(Version::V2_2, black_box(&req)))
    });
    g.bench_function("decode_send_sms", |b| {
        b.iter(|| parlayx::decode_send_sms(black_box(encoded.as_bytes())))
    });
    g.bench_function("decode_notification_receipt", |b| {
        b.iter(|| parlayx::decode_notification(black_box(receipt.as_bytes())))
    });
    g.finish();
}

fn envelope(ids: &IdGen, n: u64) -> Envelope {
    let now = now_ms();
    let to = Address::parse_user(&format!("sms:+8613{n:09}")).unwrap();
    Envelope {
        id: ids.next(),
        kind: Kind::Message,
        origin: Address::parse_user("im:bench@im.example.org").unwrap(),
        client: "bench".into(),
        client_ref: Some(format!("ref-{n}")),
        report_to: None,
        recipients: vec![Recipient::new(0, to)],
        content: Content {
            text: "Your parcel 4711 arrives today between 10:00 and 12:00".into(),
            ..Content::default()
        },
        created_at: now,
        expires_at: now + 86_400_000,
        note: None,
        speaker: None,
    }
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        path: dir.path().join("bench.db"),
        synchronous: "full".into(),
        ..StoreConfig::default()
    };
    let ids = Arc::new(IdGen::new(1));
    let store = Store::open(&cfg, ids.clone(), 86_400_000).unwrap();
    let mut n = 0u64;
    let mut g = c.benchmark_group("store");
    g.sample_size(20).measurement_time(Duration::from_secs(5));

    // One insert awaited at a time: every insert pays a whole commit (an fsync).
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert_one_at_a_time", |b| {
        b.iter_batched(
            || {
                n += 1;
                envelope(&ids, n)
            },
            |env| rt.block_on(store.insert(std::sync::Arc::new(env))).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // 256 inserts waiting together: the writer folds them into a few commits.
    const BATCH: u64 = 256;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("insert_256_concurrent", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let envs: Vec<Envelope> = (0..BATCH)
                    .map(|_| {
                        n += 1;
                        envelope(&ids, n)
                    })
                    .collect();
                let started = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = envs
                        .into_iter()
                        .map(|env| {
                            let store = store.clone();
                            tokio::spawn(
                                async move { store.insert(std::sync::Arc::new(env)).await },
                            )
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                });
                total += started.elapsed();
            }
            total
        })
    });
    g.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, soap, store);
criterion_main!(benches);
