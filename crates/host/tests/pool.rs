//! The container pool: parallel use, replacement of broken containers,
//! resets between users, failures that surface instead of hanging.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::time::Duration;

use hutch_host::protocol::Status;
use hutch_host::{ContainerBuilder, ExecSpec, Pool, PoolError};

fn builder() -> ContainerBuilder {
    if rustix::process::geteuid().is_root() {
        ContainerBuilder::new()
    } else {
        ContainerBuilder::new().allow_rusage()
    }
}

fn output_of(pool_container: &mut hutch_host::Container, argv: &[&str]) -> (Status, String) {
    let null = File::open("/dev/null").unwrap();
    let out = File::from(rustix::fs::memfd_create("out", rustix::fs::MemfdFlags::CLOEXEC).unwrap());
    let spec = ExecSpec::new(argv.iter().copied()).stdio(null.as_fd(), out.as_fd(), null.as_fd());
    let status = pool_container.exec(&spec).unwrap().status;
    let mut text = String::new();
    let mut out = out;
    out.rewind().unwrap();
    out.read_to_string(&mut text).unwrap();
    (status, text)
}

#[test]
fn many_threads_share_a_pool() {
    let pool = Pool::new(builder(), 2);
    pool.wait_ready().unwrap();
    assert_eq!(pool.idle(), 2);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let null = File::open("/dev/null").unwrap();
                let spec = ExecSpec::new(["true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
                for _ in 0..50 {
                    assert_eq!(pool.run(&spec).unwrap().status, Status::Ok);
                }
            });
        }
    });
    assert_eq!(pool.idle(), 2, "every container came back");
}

#[test]
fn a_broken_container_is_replaced() {
    let pool = Pool::new(builder(), 1);
    let init = {
        let container = pool.checkout().unwrap();
        let init = container.init_pid();
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(init).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).unwrap();
        init
    };
    // The dead container was not put back; a new one takes its place.
    let mut container = pool.checkout().unwrap();
    assert_ne!(container.init_pid(), init);
    assert_eq!(
        output_of(&mut container, &["echo", "fresh"]),
        (Status::Ok, "fresh\n".into())
    );
}

#[test]
fn timeouts_too_long_for_the_clock_wait_for_ever() {
    let pool = Pool::new(builder().reply_timeout(Some(Duration::MAX)), 1);
    let mut container = pool.checkout_timeout(Duration::MAX).unwrap();
    container.set_reply_timeout(Some(Duration::MAX));
    container.ping().unwrap();
    assert_eq!(output_of(&mut container, &["true"]).0, Status::Ok);
}

#[test]
fn more_containers_at_once_than_a_pool_hands_out_are_refused() {
    let pool = Pool::new(builder(), 1);
    match pool.checkout_many(hutch_host::MAX_CHECKOUT + 1) {
        Err(PoolError::TooMany { asked, most }) => {
            assert_eq!((asked, most), (hutch_host::MAX_CHECKOUT + 1, 1024));
        }
        other => panic!("not refused: {:?}", other.map(|taken| taken.len())),
    }
    match pool.checkout_many(usize::MAX) {
        Err(PoolError::TooMany { .. }) => {}
        other => panic!("not refused: {:?}", other.map(|taken| taken.len())),
    }
    assert_eq!(pool.checkout_many(2).unwrap().len(), 2);
}

/// Removes `dir` and the groups inside it, deepest first.
fn remove_cgroup(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            remove_cgroup(&entry.path());
        }
    }
    std::fs::remove_dir(dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
}

/// A container whose cgroups were removed from outside (by a clean-up
/// script, say) cannot run anything any more: the run that finds out fails,
/// and the pool builds a new container instead of handing that one out
/// again.
#[test]
fn a_container_whose_cgroup_was_removed_is_replaced() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: the containers need cgroups"
    );
    let pool = Pool::new(ContainerBuilder::new(), 1);
    let init = {
        let container = pool.checkout().unwrap();
        for dir in container.cgroup_dirs() {
            remove_cgroup(dir);
        }
        container.init_pid()
    };
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    let result = pool.run(&spec).unwrap();
    assert_eq!(result.status, Status::RunnerError, "{result:?}");
    assert_eq!(
        result.error.map(|error| error.stage),
        Some(hutch_host::protocol::Stage::Cgroup)
    );
    let mut container = pool.checkout().unwrap();
    assert_ne!(container.init_pid(), init, "a new container");
    assert_eq!(
        output_of(&mut container, &["echo", "fresh"]),
        (Status::Ok, "fresh\n".into())
    );
}

#[test]
fn files_do_not_outlive_a_checkout() {
    let pool = Pool::new(builder(), 1);
    {
        let mut container = pool.checkout().unwrap();
        let (status, _) = output_of(
            &mut container,
            &["sh", "-c", "echo secret > /w/left; echo x > /tmp/t"],
        );
        assert_eq!(status, Status::Ok);
    }
    let mut container = pool.checkout().unwrap();
    assert_eq!(
        output_of(&mut container, &["ls", "-A", "/w", "/tmp"]).1,
        "/tmp:\n\n/w:\n"
    );
}

#[test]
fn build_failures_surface_instead_of_hanging() {
    let pool = Pool::new(builder().bind("/no/such/source", "/data", false), 2);
    let err = pool.checkout().unwrap_err();
    assert!(matches!(err, PoolError::Build(_)), "{err:?}");
    let chain = format!("{:?}", err);
    assert!(chain.contains("/no/such/source"), "{chain}");
    assert!(pool.wait_ready().is_err());
}

#[test]
fn checkout_waits_at_most_its_timeout() {
    let pool = Pool::new(builder(), 1);
    let held = pool.checkout().unwrap();
    let err = pool
        .checkout_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err, PoolError::Timeout(_)), "{err:?}");
    drop(held);
    pool.checkout_timeout(Duration::from_secs(30))
        .expect("the container came back");
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn more_containers_than_the_pool_keeps_are_built_for_the_caller_then_destroyed() {
    let pool = Pool::new(builder(), 1);
    pool.wait_ready().unwrap();
    let mut kept = pool.checkout().unwrap().init_pid();
    for _ in 0..2 {
        let mut three = pool.checkout_many(3).unwrap();
        let inits: Vec<i32> = three.iter().map(|c| c.init_pid()).collect();
        let distinct: std::collections::HashSet<&i32> = inits.iter().collect();
        assert_eq!(distinct.len(), 3, "three distinct containers");
        assert!(inits.contains(&kept), "the pool's own among them");
        for container in &mut three {
            assert_eq!(
                output_of(container, &["echo", "hi"]),
                (Status::Ok, "hi\n".into())
            );
        }
        let cgroups: Vec<Vec<std::path::PathBuf>> =
            three.iter().map(|c| c.all_cgroup_dirs()).collect();
        drop(three);
        // One of the three stays in the pool; the two others are destroyed,
        // cgroups and all, as they come back.
        assert_eq!(pool.idle(), 1);
        let left: Vec<usize> = (0..3).filter(|&i| alive(inits[i])).collect();
        assert_eq!(left.len(), 1, "one of {inits:?} is left");
        for i in (0..3).filter(|&i| i != left[0]) {
            for dir in &cgroups[i] {
                assert!(!dir.exists(), "{} is removed", dir.display());
            }
        }
        kept = pool.checkout().unwrap().init_pid();
        assert_eq!(kept, inits[left[0]]);
    }
}

#[test]
fn several_containers_come_out_at_once_and_shutdown_waits_for_them() {
    let pool = Pool::new(builder(), 2);
    let both = pool.checkout_many(2).unwrap();
    assert_eq!(both.len(), 2);
    assert_ne!(both[0].init_pid(), both[1].init_pid());
    assert_eq!(pool.idle(), 0);
    let inits: Vec<i32> = both.iter().map(|c| c.init_pid()).collect();
    let cgroups: Vec<std::path::PathBuf> = both.iter().flat_map(|c| c.all_cgroup_dirs()).collect();
    let returner = std::thread::spawn(move || drop(both));
    pool.shutdown();
    returner.join().unwrap();
    for pid in inits {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "init {pid} is gone"
        );
    }
    for dir in cgroups {
        assert!(!dir.exists(), "{} is removed", dir.display());
    }
    assert!(matches!(pool.checkout(), Err(PoolError::Closed)));
    assert!(matches!(pool.checkout_many(1), Err(PoolError::Closed)));
}
