//! Decoding allocates at most a small multiple of the frame length: for
//! every frame, valid or not, the peak heap use during `decode_request` and
//! `decode_reply` stays within `64 × frame length + 4096` bytes.
//!
//! A counting global allocator wraps the system one. Only allocations made
//! on a thread that is measuring count, and the tests hold `LOCK` while
//! they measure, so neither the test harness nor another test pollutes the
//! counts.
//!
//! Two peaks are recorded. `peak` is the most bytes held at once, a
//! reallocation counting as the change of its block's size. `copy_peak`
//! also counts, for every growing reallocation, the old and the new block
//! as briefly held together, as when the allocator cannot grow in place and
//! copies; it is reported, not bounded.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use common::Kind;
use hutch_protocol::{MAX_FRAME_LEN, decode_reply, decode_request};

struct Counting;

/// Bytes allocated on measuring threads since the measurement began, less
/// those freed. Frees of blocks allocated before it began saturate at 0.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// The largest value `CURRENT` took.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The largest value `CURRENT` plus the new block of a reallocation took.
static COPY_PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn measuring() -> bool {
    MEASURING.try_with(Cell::get).unwrap_or(false)
}

fn grew(size: usize) {
    let current = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(current, Ordering::Relaxed);
    COPY_PEAK.fetch_max(current, Ordering::Relaxed);
}

fn shrank(size: usize) {
    // Relaxed is enough: only the measuring thread updates the counters.
    let current = CURRENT.load(Ordering::Relaxed);
    CURRENT.store(current.saturating_sub(size), Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the arguments it was given
// and returns what `System` returned, so `System`'s guarantees hold; the
// bookkeeping around the calls neither allocates nor touches the blocks.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller meets `GlobalAlloc::alloc`'s contract, which
        // is the one `System.alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && measuring() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && measuring() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this
        // allocator, that is by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        if measuring() {
            shrank(layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` was allocated by `System`
        // with `layout`, and that `new_size` is valid for its alignment.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && measuring() {
            let old_size = layout.size();
            let both = CURRENT.load(Ordering::Relaxed) + new_size;
            COPY_PEAK.fetch_max(both, Ordering::Relaxed);
            if new_size >= old_size {
                grew(new_size - old_size);
            } else {
                shrank(old_size - new_size);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by every test while it measures: the counters are global.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    peak: usize,
    copy_peak: usize,
}

/// Runs `f` with this thread's allocations counted.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COPY_PEAK.store(0, Ordering::Relaxed);
    MEASURING.set(true);
    let out = std::hint::black_box(f());
    MEASURING.set(false);
    let usage = Usage {
        peak: PEAK.load(Ordering::Relaxed),
        copy_peak: COPY_PEAK.load(Ordering::Relaxed),
    };
    (out, usage)
}

/// Heap bytes per frame byte decoding may hold: twice the largest ratio of
/// an element's size in memory to its smallest encoding, that of an
/// `ItemOutcome::Done` or a `CopyInOutcome::Done` (32 bytes, 1 on the
/// wire). See `docs/protocol.md`, "Allocation bound".
const MULTIPLE: usize = 64;

fn bound(frame_len: usize) -> usize {
    MULTIPLE * frame_len + 4096
}

/// Decodes frames and keeps score.
#[derive(Default)]
struct Checker {
    decodes: usize,
    failures: Vec<String>,
    /// Largest peak per frame byte, and the frame it came from.
    worst: (f64, String),
    /// Largest copy peak per frame byte, and the frame it came from.
    worst_copy: (f64, String),
}

impl Checker {
    /// Decodes `frame` as a request or a reply and checks the peak.
    fn check(&mut self, name: &str, kind: Kind, frame: &[u8]) {
        let (_, usage) = match kind {
            Kind::Request => measure(|| decode_request(frame).is_ok()),
            Kind::Reply => measure(|| decode_reply(frame).is_ok()),
        };
        self.decodes += 1;
        let len = frame.len().max(1);
        let multiple = usage.peak as f64 / len as f64;
        let copy_multiple = usage.copy_peak as f64 / len as f64;
        if multiple > self.worst.0 {
            self.worst = (
                multiple,
                format!("{name} as {kind:?}, {} bytes", frame.len()),
            );
        }
        if copy_multiple > self.worst_copy.0 {
            self.worst_copy = (
                copy_multiple,
                format!("{name} as {kind:?}, {} bytes", frame.len()),
            );
        }
        if usage.peak > bound(frame.len()) {
            let shown = &frame[..frame.len().min(48)];
            self.failures.push(format!(
                "{name} as {kind:?}: {} bytes peak for a {}-byte frame ({multiple:.1}×, \
                 bound {}), frame starts {shown:02x?}",
                usage.peak,
                frame.len(),
                bound(frame.len())
            ));
        }
    }

    /// Decodes `frame` both as a request and as a reply.
    fn check_both(&mut self, name: &str, frame: &[u8]) {
        self.check(name, Kind::Request, frame);
        self.check(name, Kind::Reply, frame);
    }

    fn finish(self, what: &str) {
        println!(
            "{what}: {} decodes; worst peak {:.1}× the frame length ({}); \
             worst peak counting copying reallocations {:.1}× ({})",
            self.decodes, self.worst.0, self.worst.1, self.worst_copy.0, self.worst_copy.1
        );
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} decodes exceeded {MULTIPLE} × frame length + 4096 bytes:\n{}",
            self.failures.len(),
            self.decodes,
            self.failures.join("\n")
        );
    }
}

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    /// A byte that is often a small tag, length or bool, sometimes a
    /// varint continuation, sometimes anything.
    fn shaped_byte(&mut self) -> u8 {
        match self.below(4) {
            0 | 1 => self.below(4) as u8,
            2 => 0x80 | self.byte(),
            _ => self.byte(),
        }
    }
}

#[test]
fn the_counting_allocator_sees_what_decoding_allocates() {
    let _guard = lock();
    let (buffer, usage) = measure(|| vec![1u8; 10_000]);
    assert_eq!(buffer.len(), 10_000);
    assert!(usage.peak >= 10_000, "{usage:?}");

    // A 10 000-byte path must be copied into the decoded request.
    let path = format!("/{}", "p".repeat(9_999));
    let frame = common::request_frame(&hutch_protocol::Request::Delete(hutch_protocol::Delete {
        path,
    }));
    let (decoded, usage) = measure(|| decode_request(&frame));
    assert!(decoded.is_ok());
    assert!(usage.peak >= 10_000, "{usage:?}");
    assert!(usage.peak <= bound(frame.len()), "{usage:?}");
}

#[test]
fn decoding_sample_frames_stays_within_the_bound() {
    let _guard = lock();
    let mut checker = Checker::default();
    for (name, request) in common::request_samples() {
        let frame = common::request_frame(&request);
        checker.check(name, Kind::Request, &frame);
        // The same bytes read as the other kind are most likely malformed.
        checker.check(name, Kind::Reply, &frame);
    }
    for (name, reply) in common::reply_samples() {
        let frame = common::reply_frame(&reply);
        checker.check(name, Kind::Reply, &frame);
        checker.check(name, Kind::Request, &frame);
    }
    checker.finish("sample frames");
}

#[test]
fn decoding_frames_claiming_huge_lengths_stays_within_the_bound() {
    let _guard = lock();
    let mut checker = Checker::default();
    let frames = common::overlong_claim_frames()
        .into_iter()
        .chain(common::exact_claim_frames());
    for (name, kind, frame) in frames {
        checker.check(&name, kind, &frame);
    }
    // The largest frame allowed, every vector of it claimed as full.
    for (name, kind, mut frame) in common::exact_claim_frames() {
        frame.truncate(64);
        frame.resize(MAX_FRAME_LEN, 0);
        checker.check(&format!("{name}-padded-to-max"), kind, &frame);
    }
    checker.finish("huge length claims");
}

/// The counts of one-byte elements at which a vector of `T` that serde
/// preallocated at its 1 MiB cap has just doubled its capacity, up to what
/// a frame can hold.
fn just_past_a_doubling<T>() -> Vec<usize> {
    let cap = (1 << 20) / size_of::<T>();
    (0..)
        .map(|doublings| (cap << doublings) + 1)
        .take_while(|&count| count < MAX_FRAME_LEN)
        .collect()
}

#[test]
fn outcomes_are_no_larger_than_the_bound_allows() {
    // The bound is twice the largest element size per encoded byte; an
    // outcome's `Done` is one byte, so no outcome may outgrow
    // `MULTIPLE / 2` bytes.
    // (32 bytes each on x86-64.)
    assert!(size_of::<hutch_protocol::ItemOutcome>() <= MULTIPLE / 2);
    assert!(size_of::<hutch_protocol::CopyInOutcome>() <= MULTIPLE / 2);
}

#[test]
fn decoding_outcome_vectors_just_past_a_doubling_stays_within_the_bound() {
    // The outcomes of opened and copied-in replies are the largest elements
    // per encoded byte: a `Done` is one byte on the wire.
    let _guard = lock();
    let mut checker = Checker::default();
    let mut frames = Vec::new();
    for count in just_past_a_doubling::<hutch_protocol::ItemOutcome>() {
        let mut body = vec![0x04];
        body.extend(common::varint(count as u64));
        body.resize(body.len() + count + 1, 0x00);
        frames.push((format!("opened-{count}-done"), common::frame(&body)));
    }
    for count in just_past_a_doubling::<hutch_protocol::CopyInOutcome>() {
        let mut body = vec![0x08];
        body.extend(common::varint(count as u64));
        body.resize(body.len() + count, 0x00);
        frames.push((format!("copied-in-{count}-done"), common::frame(&body)));
    }
    assert!(frames.len() >= 6);
    for (name, frame) in frames {
        assert!(frame.len() <= MAX_FRAME_LEN, "{name}");
        assert!(decode_reply(&frame).is_ok(), "{name} decodes");
        checker.check(&name, Kind::Reply, &frame);
    }
    checker.finish("outcome vectors just past a doubling");
}

#[test]
fn decoding_random_frames_stays_within_the_bound() {
    let _guard = lock();
    let mut checker = Checker::default();
    let mut rng = Rng(0x6875_7463_6800_0001);
    for i in 0..4000 {
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 | 2 => rng.below(256),
            _ => rng.below(4096),
        } as usize;
        let mut frame = common::HEADER.to_vec();
        let shaped = i % 2 == 1;
        for _ in 0..len {
            frame.push(if shaped {
                rng.shaped_byte()
            } else {
                rng.byte()
            });
        }
        if let (true, Some(tag)) = (i % 4 >= 2, frame.get_mut(4)) {
            // Every request tag (0 to 12), every reply tag (0 to 8), and a
            // few beyond.
            *tag = rng.below(15) as u8;
        }
        checker.check_both(&format!("random frame {i}"), &frame);
    }
    checker.finish("random frames");
}

#[test]
fn decoding_mutated_sample_frames_stays_within_the_bound() {
    let _guard = lock();
    let mut checker = Checker::default();
    let mut rng = Rng(0x6d75_7461_7465_0002);
    let frames: Vec<(&str, Vec<u8>)> = common::request_samples()
        .iter()
        .map(|(name, request)| (*name, common::request_frame(request)))
        .chain(
            common::reply_samples()
                .iter()
                .map(|(name, reply)| (*name, common::reply_frame(reply))),
        )
        .collect();
    for i in 0..3000 {
        let (name, base) = &frames[rng.below(frames.len() as u64) as usize];
        let mut frame = base.clone();
        for _ in 0..=rng.below(4) {
            let at = 4 + rng.below((frame.len() - 4) as u64 + 1) as usize;
            match rng.below(4) {
                0 if at < frame.len() => frame[at] = rng.byte(),
                1 => {
                    // Insert a large varint: a claimed length or count.
                    let claim = common::varint(rng.next() >> rng.below(64));
                    frame.splice(at..at, claim);
                }
                2 if at < frame.len() => {
                    frame.remove(at);
                }
                _ => frame.insert(at, rng.shaped_byte()),
            }
        }
        checker.check_both(&format!("mutation {i} of {name}"), &frame);
    }
    checker.finish("mutated sample frames");
}
