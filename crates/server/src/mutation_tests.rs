//! Requests mutated at random, thousands of them, through everything the
//! server does with a request before anything runs: JSON parsing
//! (`api::parse_run_request`), protobuf decoding and reading into the same
//! model (`grpc::to_run_request`), and making the job (`convert::to_job`,
//! which opens stored files and `src` files under a prefix). Each must
//! answer, accepted or refused with a message; none may panic. The
//! generator is seeded, so a failure is reproducible from its iteration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hutch_host::FileStore;
use prost::Message;
use serde_json::{Value, json};

use crate::convert::{self, SrcPrefix};
use crate::{api, grpc, pb};

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a request may meet: a store with one file, a prefix with one file
/// and a link out of it.
struct World {
    store: FileStore,
    stored_id: String,
    prefix_dir: PathBuf,
    prefixes: Vec<SrcPrefix>,
    defaults: convert::Defaults,
}

impl World {
    fn new() -> Self {
        let store = FileStore::temporary().unwrap();
        let stored_id = store.add("a.out", &mut &b"stored"[..]).unwrap();
        let prefix_dir = store.dir().with_extension("prefix");
        std::fs::create_dir_all(&prefix_dir).unwrap();
        std::fs::write(prefix_dir.join("in.txt"), "input").unwrap();
        let _ = std::os::unix::fs::symlink("/etc/passwd", prefix_dir.join("out"));
        let prefixes = vec![SrcPrefix::open(&prefix_dir).unwrap()];
        Self {
            store,
            stored_id,
            prefix_dir,
            prefixes,
            defaults: crate::Config::default().defaults,
        }
    }

    /// Makes the job of a request that parsed; whether it was accepted.
    fn make_job(&self, request: &api::RunRequest) -> bool {
        match convert::to_job(request, &self.defaults, 4, &self.store, &self.prefixes) {
            Ok(_) => true,
            Err(error) => {
                assert!(!error.message.is_empty(), "a refusal without a message");
                false
            }
        }
    }

    /// Valid requests, each reaching different parts of the model.
    fn corpus(&self) -> Vec<Value> {
        let src = self.prefix_dir.join("in.txt").display().to_string();
        let io = |stdin: Value| json!([stdin, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}]);
        vec![
            json!({"cmd": [{"args": ["echo", "hi"], "env": ["PATH=/bin"],
                "files": io(json!({"content": ""})), "cpuLimit": 1_000_000_000u64,
                "memoryLimit": 64u64 << 20, "procLimit": 10}]}),
            json!({"requestId": "r", "cmd": [{"args": ["cc", "a.c"],
                "files": io(json!({"src": src})),
                "copyIn": {"a.c": {"content": "int main(){}"}, "lib/x": {"fileId": self.stored_id},
                    "link": {"symlink": "a.c"}},
                "copyOut": ["stdout", "stderr?"], "copyOutCached": ["a.out"],
                "copyOutMax": 1024, "copyOutTruncate": true,
                "clockLimit": 2_000_000_000u64, "realCpuLimit": 3_000_000_000u64,
                "stackLimit": 8u64 << 20, "cpuSetLimit": "0-1",
                "strictMemoryLimit": true, "addressSpaceLimit": true}]}),
            json!({"cmd": [
                {"args": ["producer"], "files": [{"content": "x"}, null, {"name": "stderr", "max": 10}]},
                {"args": ["consumer"], "files": [null, {"name": "stdout", "max": 10}, {"name": "stderr", "max": 10}]}],
                "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}},
                    {"in": {"index": 1, "fd": 3}, "out": {"index": 0, "fd": 3}, "proxy": true,
                     "name": "log", "max": 100}]}),
            json!({"cmd": [
                {"args": ["interactor"], "files": [null, null, {"name": "stderr", "max": 10}]},
                {"args": ["solution"], "files": [null, null, {"name": "stderr", "max": 10}]}],
                "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}},
                    {"in": {"index": 1, "fd": 1}, "out": {"index": 0, "fd": 0}, "proxy": true,
                     "name": "sol", "max": 1000}]}),
            json!({"cmd": [{"args": ["a.out"], "files": io(json!({"fileId": self.stored_id})),
                "dataSegmentLimit": true, "copyIn": {"/tmp/abs": {"src": src}}}]}),
        ]
    }
}

/// Numbers where limits and indices break.
const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "1",
    "3",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "-1e300",
    "0.5",
    "-0",
    "1e-7",
];

/// Strings where paths, ids, names and CPU lists break.
const STRINGS: &[&str] = &[
    "",
    ".",
    "..",
    "/",
    "//",
    "a/../../b",
    "/etc/passwd",
    "a\u{0}b",
    "stdout",
    "stdout?",
    "?",
    "0-",
    "-1",
    "3-1",
    "0-99999",
    "0,,1",
    "AAAAAAAAAAAAAAAA",
    "PATH",
    "=",
    "ünï/cødé",
    "a\nb",
];

/// Keys a mutation may add, so that fields appear where they are not
/// expected.
const KEYS: &[&str] = &[
    "args",
    "env",
    "files",
    "cpuLimit",
    "clockLimit",
    "realCpuLimit",
    "memoryLimit",
    "stackLimit",
    "procLimit",
    "cpuSetLimit",
    "copyIn",
    "copyOut",
    "copyOutCached",
    "copyOutMax",
    "copyOutTruncate",
    "src",
    "content",
    "fileId",
    "symlink",
    "name",
    "max",
    "pipe",
    "in",
    "out",
    "index",
    "fd",
    "proxy",
    "cmd",
    "pipeMapping",
    "tty",
    "streamIn",
    "streamOut",
    "CPULIMIT",
    "unknown",
];

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 | 1 => {
            let number = *rng.pick::<&str>(NUMBERS);
            serde_json::from_str(number).unwrap()
        }
        2 | 3 => Value::String((*rng.pick(STRINGS)).to_owned()),
        4 => Value::Bool(rng.below(2) == 0),
        _ => Value::Null,
    }
}

/// The paths of every node of `value`, as indices into objects' keys and
/// arrays.
fn node_count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(node_count).sum(),
        Value::Object(map) => map.values().map(node_count).sum(),
        _ => 0,
    }
}

/// The `n`th node of `value` in pre-order.
fn nth_node(value: &mut Value, mut n: usize) -> Option<&mut Value> {
    fn walk<'a>(value: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(value);
        }
        *n -= 1;
        match value {
            Value::Array(items) => items.iter_mut().find_map(|item| walk(item, n)),
            Value::Object(map) => map.values_mut().find_map(|item| walk(item, n)),
            _ => None,
        }
    }
    walk(value, &mut n)
}

/// One random change somewhere in `request`.
fn mutate(rng: &mut Rng, request: &mut Value) {
    let count = node_count(request);
    let at = rng.below(count);
    let choice = rng.below(8);
    let Some(node) = nth_node(request, at) else {
        return;
    };
    match (choice, node) {
        (0 | 1, node) => *node = random_scalar(rng),
        (2, Value::Array(items)) if !items.is_empty() => {
            let i = rng.below(items.len());
            items.remove(i);
        }
        (2, Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
            map.remove(&key);
        }
        (3, Value::Array(items)) if !items.is_empty() => {
            let copy = items[rng.below(items.len())].clone();
            items.push(copy);
        }
        (3 | 4, Value::Object(map)) => {
            map.insert((*rng.pick(KEYS)).to_owned(), random_scalar(rng));
        }
        (5, node) => *node = Value::Array(vec![random_scalar(rng)]),
        (6, node) => {
            let mut map = serde_json::Map::new();
            map.insert((*rng.pick(KEYS)).to_owned(), random_scalar(rng));
            *node = Value::Object(map);
        }
        (_, Value::Array(items)) => items.push(random_scalar(rng)),
        (_, node) => *node = random_scalar(rng),
    }
}

/// Changes a few bytes of `bytes`: flips, overwrites with bytes where
/// varints and lengths break, cuts, repeats a span.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.next() as u8);
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(5) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'{', b'[', b'\\']),
        2 => bytes.truncate(at),
        3 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            let span = bytes[at..end].to_vec();
            bytes.splice(at..at, span);
        }
        _ => {
            bytes.remove(at);
        }
    }
}

#[test]
fn mutated_json_requests_are_accepted_or_refused_never_panicked_on() {
    let world = World::new();
    let corpus = world.corpus();
    for request in &corpus {
        let parsed = api::parse_run_request(request.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("the corpus must parse: {}: {request}", e.message));
        assert!(
            world.make_job(&parsed),
            "the corpus must make jobs: {request}"
        );
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for iteration in 0..20_000 {
        let mut request = rng.pick(&corpus).clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut request);
        }
        let mut body = request.to_string().into_bytes();
        if rng.below(4) == 0 {
            mutate_bytes(&mut rng, &mut body);
        }
        let outcome = std::panic::catch_unwind(|| match api::parse_run_request(&body) {
            Ok(parsed) => world.make_job(&parsed),
            Err(error) => {
                assert!(!error.message.is_empty());
                false
            }
        });
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!(
                "iteration {iteration} panicked on {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    // Both ways out were taken, many times.
    assert!(
        accepted > 1000 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
    let _ = std::fs::remove_dir_all(&world.prefix_dir);
}

/// gRPC requests equivalent to the JSON corpus's first three.
fn grpc_corpus(world: &World) -> Vec<pb::Request> {
    use pb::request::file::File as Kind;
    use pb::request::pipe_map::PipeIndex;
    use pb::request::{
        CachedFile, CmdCopyOutFile, CmdType, File, LocalFile, MemoryFile, PipeCollector, PipeMap,
    };
    let file = |kind: Kind| File { file: Some(kind) };
    let collector = |name: &str| {
        file(Kind::Pipe(PipeCollector {
            name: name.into(),
            max: 10240,
            pipe: false,
        }))
    };
    let src = world.prefix_dir.join("in.txt").display().to_string();
    let simple = CmdType {
        args: vec!["echo".into(), "hi".into()],
        env: vec!["PATH=/bin".into()],
        files: vec![
            file(Kind::Memory(MemoryFile { content: vec![] })),
            collector("stdout"),
            collector("stderr"),
        ],
        cpu_time_limit: 1_000_000_000,
        memory_limit: 64 << 20,
        proc_limit: 10,
        ..CmdType::default()
    };
    let compile = CmdType {
        args: vec!["cc".into(), "a.c".into()],
        files: vec![
            file(Kind::Local(LocalFile { src })),
            collector("stdout"),
            collector("stderr"),
        ],
        copy_in: BTreeMap::from([
            (
                "a.c".into(),
                file(Kind::Memory(MemoryFile {
                    content: b"int main(){}".to_vec(),
                })),
            ),
            (
                "lib/x".into(),
                file(Kind::Cached(CachedFile {
                    file_id: world.stored_id.clone(),
                })),
            ),
        ]),
        symlinks: BTreeMap::from([("link".into(), "a.c".into())]),
        copy_out: vec![CmdCopyOutFile {
            name: "stdout".into(),
            optional: true,
        }],
        copy_out_cached: vec![CmdCopyOutFile {
            name: "a.out".into(),
            optional: false,
        }],
        copy_out_max: 1024,
        clock_time_limit: 2_000_000_000,
        cpu_set_limit: "0-1".into(),
        data_segment_limit: true,
        copy_out_truncate: true,
        ..CmdType::default()
    };
    let mut piped = simple.clone();
    piped.files[1] = File::default();
    vec![
        pb::Request {
            request_id: "r".into(),
            cmd: vec![simple.clone()],
            ..pb::Request::default()
        },
        pb::Request {
            cmd: vec![compile],
            ..pb::Request::default()
        },
        pb::Request {
            cmd: vec![piped, {
                let mut reader = simple;
                reader.files[0] = File::default();
                reader
            }],
            pipe_mapping: vec![PipeMap {
                r#in: Some(PipeIndex { index: 0, fd: 1 }),
                out: Some(PipeIndex { index: 1, fd: 0 }),
                proxy: true,
                name: "p".into(),
                max: 100,
                ..PipeMap::default()
            }],
            ..pb::Request::default()
        },
    ]
}

#[test]
fn mutated_grpc_requests_are_accepted_or_refused_never_panicked_on() {
    let world = World::new();
    let corpus: Vec<Vec<u8>> = grpc_corpus(&world)
        .iter()
        .map(Message::encode_to_vec)
        .collect();
    for bytes in &corpus {
        let request = grpc::to_run_request(pb::Request::decode(&bytes[..]).unwrap())
            .unwrap_or_else(|e| panic!("the corpus must read: {}", e.message));
        assert!(world.make_job(&request), "the corpus must make jobs");
    }
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let (mut undecodable, mut accepted, mut refused) = (0, 0, 0);
    for iteration in 0..20_000 {
        let mut bytes = rng.pick(&corpus).clone();
        for _ in 0..=rng.below(3) {
            mutate_bytes(&mut rng, &mut bytes);
        }
        let outcome = std::panic::catch_unwind(|| match pb::Request::decode(&bytes[..]) {
            Err(_) => None,
            Ok(request) => Some(match grpc::to_run_request(request) {
                Ok(request) => world.make_job(&request),
                Err(error) => {
                    assert!(!error.message.is_empty());
                    false
                }
            }),
        });
        match outcome {
            Ok(None) => undecodable += 1,
            Ok(Some(true)) => accepted += 1,
            Ok(Some(false)) => refused += 1,
            Err(_) => panic!("iteration {iteration} panicked on {bytes:?}"),
        }
    }
    assert!(
        undecodable > 1000 && accepted > 500 && refused > 300,
        "{undecodable} undecodable, {accepted} accepted, {refused} refused"
    );
    let _ = std::fs::remove_dir_all(&world.prefix_dir);
}
