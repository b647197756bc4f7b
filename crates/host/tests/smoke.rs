use hutch_host::{ContainerBuilder, ExecSpec};
use std::os::fd::AsFd;

#[test]
fn echo_runs() {
    let mut c = ContainerBuilder::new().build().unwrap();
    c.ping().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let out = std::io::stdout();
    let err = std::io::stderr();
    let spec = ExecSpec::new([
        "sh",
        "-c",
        "echo hello; id; hostname; ls -la / /w /dev; cat /proc/self/status | grep -i cap",
    ])
    .stdio(null.as_fd(), out.as_fd(), err.as_fd());
    let r = c.exec(&spec).unwrap();
    eprintln!("{r:?}");
}
