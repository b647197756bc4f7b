//! Cost of the wire codec, per message kind.
//!
//! `encode/<kind>` writes one frame into a buffer of [`MAX_FRAME_LEN`] bytes
//! allocated once, as a sender does: no allocation is measured.
//! `decode/<kind>` turns one frame into a validated message, as a receiver
//! does: [`decode_request`] or [`decode_reply`], then `validate` with the
//! descriptor count that came with the frame, then dropping the message.
//! `<kind>` is [`hutch_benches::Fixture::name`]; init's half of the handshake
//! is `hello-reply`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hutch_benches::{Fixture, replies, reply_frame, request_frame, requests};
use hutch_protocol::{MAX_FRAME_LEN, decode_reply, decode_request, encode_reply, encode_request};

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    for Fixture { name, message, .. } in requests() {
        group.bench_function(name, |b| {
            b.iter(|| encode_request(black_box(&message), black_box(&mut buf)).unwrap());
        });
    }
    for Fixture { name, message, .. } in replies() {
        group.bench_function(name, |b| {
            b.iter(|| encode_reply(black_box(&message), black_box(&mut buf)).unwrap());
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for Fixture { name, message, fds } in requests() {
        let frame = request_frame(&message);
        group.bench_function(name, |b| {
            b.iter(|| {
                decode_request(black_box(&frame))
                    .unwrap()
                    .validate(black_box(fds))
                    .unwrap()
            });
        });
    }
    for Fixture { name, message, fds } in replies() {
        let frame = reply_frame(&message);
        group.bench_function(name, |b| {
            b.iter(|| {
                decode_reply(black_box(&frame))
                    .unwrap()
                    .validate(black_box(fds))
                    .unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
