//! What running `/bin/true` costs, directly and in containers, in one run:
//! every benchmark of the group `container` runs the same program with its
//! standard descriptors on `/dev/null`, so each figure reads as a ratio to
//! `baseline`.
//!
//! - `container/baseline`: start `/bin/true` with [`Command`] and wait for
//!   it. With glibc, `Command` spawns through `posix_spawn`, which is
//!   `clone3(CLONE_VM | CLONE_VFORK)` + `execve`: the floor any way of
//!   running a program pays.
//! - `container/warm-exec`: one [`Container::exec`] in a container built
//!   before the measurement.
//! - `container/cold-build-destroy`: [`ContainerBuilder::build`] with the
//!   defaults, then [`Container::destroy`].
//!
//! `hutch bench` measures the same operations (and a few more) with its own
//! timer; this file gives criterion's estimates and its change detection
//! between runs. The whole file takes about half a minute:
//! `cargo bench -p hutch-benches --bench container`.
//!
//! [`Container::exec`]: hutch_host::Container::exec
//! [`Container::destroy`]: hutch_host::Container::destroy
//! [`ContainerBuilder::build`]: hutch_host::ContainerBuilder::build

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use hutch_host::protocol::Status;
use hutch_host::{ContainerBuilder, ExecSpec};

const PROGRAM: &str = "/bin/true";

fn dev_null() -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("/dev/null opens")
}

fn container(c: &mut Criterion) {
    let mut group = c.benchmark_group("container");

    group.bench_function("baseline", |b| {
        b.iter(|| {
            let status = Command::new(PROGRAM)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("/bin/true starts");
            assert!(status.success(), "/bin/true failed: {status}");
        });
    });

    let null = dev_null();
    let mut warm = ContainerBuilder::new()
        .build()
        .expect("a container starts (user namespaces are needed)");
    let spec = ExecSpec::new([PROGRAM]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    group.bench_function("warm-exec", |b| {
        b.iter(|| {
            let result = warm.exec(&spec).expect("the container runs /bin/true");
            assert_eq!(result.status, Status::Ok, "{result:?}");
        });
    });
    warm.destroy();

    // Milliseconds per iteration: the same number of iterations in every
    // sample keeps the run within the measurement time.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("cold-build-destroy", |b| {
        b.iter(|| {
            ContainerBuilder::new()
                .build()
                .expect("a container starts")
                .destroy();
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = container
}
criterion_main!(benches);
