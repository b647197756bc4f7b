//! A checked go-judge request turned into a [`Job`], and the job's results
//! turned back into go-judge's.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hutch_host::protocol::{MAX_PATH_LEN, MAX_PROCESSES, MAX_TIME_NS, MIN_MEMORY_BYTES, Resource};
use hutch_host::{
    Collector, Command, CommandResult, CopyIn, CopyOut, ExecSpec, FileStore, Job, MAX_JOB_FDS,
    PipeEnd, Proxy, Source, Stream, Verdict,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::api::{Cmd, CmdFile, FileErrorJson, PipeMap, RunRequest, RunResult};
use crate::error::ApiError;
use crate::pb::response::result::StatusType;

/// The largest memory limit a request may ask for: 1 PiB. More is a
/// mistake (a unit confused), not a machine.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

/// What the server applies where a request leaves a limit at 0, and what
/// it never lets a request exceed.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Wall-clock limit of a command with neither CPU nor clock limit.
    pub clock_limit: Duration,
    /// Memory limit of a command that gives none.
    pub memory_limit: u64,
    /// Process limit of a command that gives none.
    pub proc_limit: u32,
    /// Largest file a program may write (`RLIMIT_FSIZE`), and the most a
    /// collector keeps.
    pub output_limit: u64,
    /// Open-file limit of every program.
    pub open_files: u64,
    /// Copy-out limit of a command that gives no `copyOutMax`.
    pub copy_out_limit: u64,
    /// The seccomp program every program runs under.
    pub seccomp: Vec<hutch_host::protocol::BpfInstruction>,
}

/// A host directory `src` files may come from.
#[derive(Debug)]
pub struct SrcPrefix {
    /// The directory as the operator named it, made absolute: a `src` may
    /// be spelled from here even where it is a symbolic link.
    pub given: PathBuf,
    /// The directory, canonical.
    pub path: PathBuf,
    /// Opened once, for `openat2(RESOLVE_BENEATH)`.
    pub dir: OwnedFd,
}

impl SrcPrefix {
    /// Opens `path` (a directory) as a prefix.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let given = std::path::absolute(path)?;
        let path = std::fs::canonicalize(path)?;
        let dir = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { given, path, dir })
    }

    /// What follows this prefix in `path`, spelled from the prefix as given
    /// or from its real path; `None` when `path` is not below it.
    fn rest<'p>(&self, path: &'p std::path::Path) -> Option<&'p std::path::Path> {
        path.strip_prefix(&self.given)
            .or_else(|_| path.strip_prefix(&self.path))
            .ok()
    }

    /// The prefix as messages name it: as given, and where it really is
    /// when that differs.
    fn shown(&self) -> String {
        if self.given == self.path {
            self.path.display().to_string()
        } else {
            format!("{} ({})", self.given.display(), self.path.display())
        }
    }
}

/// The host's ends of the descriptors a `/stream` request streams, as
/// [`to_stream_job`] makes them: pipes, whose other ends the programs get.
#[derive(Debug, Default)]
pub struct StreamEnds {
    /// `(command, fd, the write end)` of every `streamIn`.
    pub inputs: Vec<(usize, usize, OwnedFd)>,
    /// `(command, fd, the read end)` of every `streamOut`.
    pub outputs: Vec<(usize, usize, OwnedFd)>,
}

/// The largest command index and descriptor a stream may have: go-judge's
/// WebSocket frames carry each in four bits.
pub const MAX_STREAM_FIELD: usize = 15;

/// The most commands a request may have when `--parallelism` is lower: as
/// many as go-judge's stream frames can number (their index has four bits).
pub const MIN_COMMAND_CAP: usize = MAX_STREAM_FIELD + 1;

/// The most commands one request may have on a server that runs
/// `parallelism` at once: that many, and at least [`MIN_COMMAND_CAP`]. A
/// request with more commands than `parallelism` runs alone, in the pool's
/// containers and as many more built for it.
pub fn command_cap(parallelism: usize) -> usize {
    parallelism.max(MIN_COMMAND_CAP)
}

/// Turns a request into a job, checking everything a client can get wrong
/// first: nothing runs unless all of it is right. `parallelism` is the most
/// commands the server runs at once; a request may have up to
/// [`command_cap`] of it. Streamed descriptors (`streamIn`, `streamOut`)
/// are refused.
pub fn to_job(
    request: &RunRequest,
    defaults: &Defaults,
    parallelism: usize,
    store: &FileStore,
    prefixes: &[SrcPrefix],
) -> Result<Job, ApiError> {
    make_job(request, defaults, parallelism, store, prefixes, None)
}

/// [`to_job`] for `/stream`: each streamed descriptor becomes a pipe whose
/// host end is in the returned [`StreamEnds`].
pub fn to_stream_job(
    request: &RunRequest,
    defaults: &Defaults,
    parallelism: usize,
    store: &FileStore,
    prefixes: &[SrcPrefix],
) -> Result<(Job, StreamEnds), ApiError> {
    let mut ends = StreamEnds::default();
    let job = make_job(
        request,
        defaults,
        parallelism,
        store,
        prefixes,
        Some(&mut ends),
    )?;
    Ok((job, ends))
}

fn make_job(
    request: &RunRequest,
    defaults: &Defaults,
    parallelism: usize,
    store: &FileStore,
    prefixes: &[SrcPrefix],
    mut streams: Option<&mut StreamEnds>,
) -> Result<Job, ApiError> {
    let commands = request.cmd.len();
    if commands == 0 {
        return Err(ApiError::bad(
            "no cmd provided: cmd must list at least one command",
        ));
    }
    let cap = command_cap(parallelism);
    if commands > cap {
        return Err(ApiError::bad(format!(
            "the request has {commands} commands, more than the {cap} this server takes in one \
             request (--parallelism, and at least {MIN_COMMAND_CAP})"
        )));
    }
    let mut job = Job::new().with_store(store.clone());
    // Which descriptor slots of each command a pipe fills, and the names a
    // proxy records under in its writer's results.
    let mut piped: Vec<Vec<bool>> = request
        .cmd
        .iter()
        .map(|cmd| cmd.files.iter().map(Option::is_none).collect())
        .collect();
    let mut filled: Vec<Vec<bool>> = request
        .cmd
        .iter()
        .map(|cmd| vec![false; cmd.files.len()])
        .collect();
    // Per writer, the names of its proxies' records, with the pipe of each.
    let mut proxy_names: Vec<Vec<(usize, String)>> = vec![Vec::new(); commands];
    let mut pipes = Vec::with_capacity(request.pipe_mapping.len());
    for (k, pipe) in request.pipe_mapping.iter().enumerate() {
        let writer = pipe_end(k, "in", pipe.input, request)?;
        let reader = pipe_end(k, "out", pipe.output, request)?;
        for (end, side) in [(writer, "in"), (reader, "out")] {
            let slots = &mut piped[end.command];
            let taken = &mut filled[end.command];
            if end.fd >= slots.len() {
                slots.resize(end.fd + 1, true);
                taken.resize(end.fd + 1, false);
            }
            if !slots[end.fd] {
                return Err(ApiError::bad(format!(
                    "pipeMapping[{k}].{side} names fd {} of cmd[{}], which its files already \
                     fill; leave that slot null for the pipe",
                    end.fd, end.command
                )));
            }
            if taken[end.fd] {
                return Err(ApiError::bad(format!(
                    "pipeMapping[{k}].{side} names fd {} of cmd[{}], which another pipe \
                     already uses",
                    end.fd, end.command
                )));
            }
            taken[end.fd] = true;
        }
        if pipe.proxy && !pipe.name.is_empty() {
            // A name is one file of the writer's results.
            let w = writer.command;
            let collected = request.cmd[w].files.iter().any(
                |file| matches!(file, Some(CmdFile::Collector { name, .. }) if *name == pipe.name),
            );
            if collected {
                return Err(ApiError::bad(format!(
                    "pipeMapping[{k}].name {:?} is also the name of a collector in cmd[{w}].files; \
                     a proxy records into its writer's files, so give it a name of its own",
                    pipe.name
                )));
            }
            if let Some((earlier, _)) = proxy_names[w].iter().find(|(_, n)| *n == pipe.name) {
                return Err(ApiError::bad(format!(
                    "pipeMapping[{k}].name {:?} is also the name of pipeMapping[{earlier}], a \
                     proxy of the same writer, cmd[{w}]; give each a name of its own",
                    pipe.name
                )));
            }
            proxy_names[w].push((k, pipe.name.clone()));
        }
        pipes.push((pipe, writer, reader));
    }
    for (i, cmd) in request.cmd.iter().enumerate() {
        if let Some(fd) = (0..filled[i].len()).find(|&fd| piped[i][fd] && !filled[i][fd]) {
            return Err(ApiError::bad(format!(
                "cmd[{i}].files[{fd}] is null, and no pipeMapping fills it"
            )));
        }
        let command = to_command(
            i,
            cmd,
            &proxy_names[i],
            defaults,
            store,
            prefixes,
            streams.as_deref_mut(),
        )?;
        job.command(command);
    }
    for (pipe, writer, reader) in pipes {
        let PipeMap {
            name, max, proxy, ..
        } = pipe;
        if *proxy {
            // As go-judge: a record named in copyOutCached is stored, as
            // any result file so named.
            let cached = request.cmd[writer.command]
                .copy_out_cached
                .iter()
                .any(|file| file.name == *name);
            job.proxied_pipe(
                writer,
                reader,
                Proxy {
                    name: (!name.is_empty()).then(|| name.clone()),
                    max: (*max).min(defaults.output_limit),
                    store: cached,
                },
            );
        } else {
            job.pipe(writer, reader);
        }
    }
    // Everything the job could refuse was checked above; what is left would
    // be this server's mistake, which is still better told than hidden.
    job.check().map_err(|e| {
        ApiError::bad(format!(
            "the request cannot run: {}",
            hutch_host::error_chain(&e)
        ))
    })?;
    Ok(job)
}

fn pipe_end(
    k: usize,
    side: &str,
    end: crate::api::PipeIndex,
    request: &RunRequest,
) -> Result<PipeEnd, ApiError> {
    let commands = request.cmd.len();
    let command = usize::try_from(end.index)
        .ok()
        .filter(|&index| index < commands)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "pipeMapping[{k}].{side}.index is {}, but the request has {commands} commands",
                end.index
            ))
        })?;
    let fd = usize::try_from(end.fd)
        .ok()
        .filter(|&fd| fd < MAX_JOB_FDS)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "pipeMapping[{k}].{side}.fd is {}; a program has at most {MAX_JOB_FDS} \
                 descriptors",
                end.fd
            ))
        })?;
    Ok(PipeEnd { command, fd })
}

fn to_command(
    i: usize,
    cmd: &Cmd,
    proxy_names: &[(usize, String)],
    defaults: &Defaults,
    store: &FileStore,
    prefixes: &[SrcPrefix],
    mut streams: Option<&mut StreamEnds>,
) -> Result<Command, ApiError> {
    let at = |field: &str| format!("cmd[{i}].{field}");
    if cmd.args.is_empty() {
        return Err(ApiError::bad(format!("{} is empty", at("args"))));
    }
    if cmd.args[0].is_empty() {
        return Err(ApiError::bad(format!(
            "{} is an empty string",
            at("args[0]")
        )));
    }
    if let Some(j) = cmd.args.iter().position(|arg| arg.contains('\0')) {
        return Err(ApiError::bad(format!(
            "{} holds a NUL byte",
            at(&format!("args[{j}]"))
        )));
    }
    if cmd.tty {
        return Err(ApiError::bad(format!(
            "{}: terminals are not supported by hutch",
            at("tty")
        )));
    }
    let mut spec = ExecSpec::new(cmd.args.iter().cloned());
    for (j, entry) in cmd.env.iter().enumerate() {
        match entry.split_once('=') {
            _ if entry.contains('\0') => {
                return Err(ApiError::bad(format!(
                    "{} holds a NUL byte: {entry:?}",
                    at(&format!("env[{j}]"))
                )));
            }
            Some((key, value)) if !key.is_empty() => spec = spec.env(key, value),
            _ => {
                return Err(ApiError::bad(format!(
                    "{} is not KEY=VALUE: {entry:?}",
                    at(&format!("env[{j}]"))
                )));
            }
        }
    }

    // Time: CPU, and wall clock (realCpuLimit, then clockLimit, then the
    // CPU limit, then the server's default).
    let time = |field: &str, ns: u64| -> Result<u64, ApiError> {
        if ns > MAX_TIME_NS {
            return Err(ApiError::bad(format!(
                "{} is {ns} ns, more than the largest limit of {} s",
                at(field),
                MAX_TIME_NS / 1_000_000_000
            )));
        }
        Ok(ns)
    };
    let cpu = time("cpuLimit", cmd.cpu_limit)?;
    let clock = match (
        time("realCpuLimit", cmd.real_cpu_limit)?,
        time("clockLimit", cmd.clock_limit)?,
    ) {
        (real, _) if real > 0 => real,
        (_, clock) if clock > 0 => clock,
        _ if cpu > 0 => cpu,
        _ => defaults.clock_limit.as_nanos().min(u128::from(MAX_TIME_NS)) as u64,
    };
    if cpu > 0 {
        spec = spec.cpu_time(Duration::from_nanos(cpu));
    }
    spec = spec.wall_time(Duration::from_nanos(clock));

    let memory = match cmd.memory_limit {
        0 => defaults.memory_limit,
        bytes if bytes < MIN_MEMORY_BYTES => {
            return Err(ApiError::bad(format!(
                "{} is {bytes} bytes, less than the smallest limit of {MIN_MEMORY_BYTES} (1 MiB)",
                at("memoryLimit")
            )));
        }
        bytes if bytes > MAX_MEMORY_BYTES => {
            return Err(ApiError::bad(format!(
                "{} is {bytes} bytes, more than the largest limit of {MAX_MEMORY_BYTES} (1 PiB)",
                at("memoryLimit")
            )));
        }
        bytes => bytes,
    };
    spec = spec.memory_limit(memory);
    if cmd.stack_limit > 0 {
        // As go-judge: the stack never gets more than the memory limit.
        let stack = cmd.stack_limit.min(memory);
        spec = spec.rlimit(Resource::Stack, stack, stack);
    }
    if cmd.data_segment_limit || cmd.strict_memory_limit {
        spec = spec.rlimit(Resource::Data, memory, memory);
    }
    if cmd.address_space_limit {
        spec = spec.rlimit(Resource::As, memory, memory);
    }
    let processes = match cmd.proc_limit {
        0 => defaults.proc_limit,
        count => u32::try_from(count)
            .ok()
            .filter(|&count| count <= MAX_PROCESSES)
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "{} is {count}, more than the largest limit of {MAX_PROCESSES}",
                    at("procLimit")
                ))
            })?,
    };
    spec = spec.process_limit(processes);
    if !cmd.cpu_set_limit.is_empty() {
        spec = spec.cpus(cpu_set(&cmd.cpu_set_limit).map_err(|reason| {
            ApiError::bad(format!(
                "{} {:?} is not a CPU list like 0-3,6: {reason}",
                at("cpuSetLimit"),
                cmd.cpu_set_limit
            ))
        })?);
    }
    spec = spec
        .output_limit(defaults.output_limit)
        .rlimit(Resource::Nofile, defaults.open_files, defaults.open_files)
        .seccomp(defaults.seccomp.clone());

    let mut command = Command::new(spec);
    let cached = |name: &str| cmd.copy_out_cached.iter().any(|c| c.name == name);
    let mut collectors: Vec<&str> = Vec::new();
    for (j, file) in cmd.files.iter().enumerate() {
        let field = at(&format!("files[{j}]"));
        let stream = match file {
            None => Stream::Piped,
            Some(CmdFile::Collector { name, max, pipe }) => {
                collectors.push(name);
                Stream::Collect(Collector {
                    name: name.clone(),
                    max: (*max).min(defaults.output_limit),
                    pipe: *pipe,
                    store: cached(name),
                })
            }
            Some(CmdFile::Symlink(_)) => {
                return Err(ApiError::bad(format!(
                    "{field} is a symlink, which only copyIn takes"
                )));
            }
            Some(file @ (CmdFile::StreamIn | CmdFile::StreamOut)) => {
                let Some(ends) = streams.as_deref_mut() else {
                    return Err(ApiError::bad(format!(
                        "{field}: streamIn and streamOut are for the /stream WebSocket; /run and \
                         Exec take none"
                    )));
                };
                if i > MAX_STREAM_FIELD || j > MAX_STREAM_FIELD {
                    return Err(ApiError::bad(format!(
                        "{field}: a stream's command index and descriptor must be at most \
                         {MAX_STREAM_FIELD}"
                    )));
                }
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| {
                        ApiError::new(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("{field}: cannot make a pipe: {e}"),
                        )
                    })?;
                if *file == CmdFile::StreamIn {
                    ends.inputs.push((i, j, write));
                    Stream::Fd(Arc::new(read))
                } else {
                    ends.outputs.push((i, j, read));
                    Stream::Fd(Arc::new(write))
                }
            }
            Some(file) => Stream::Input(source(&field, file, store, prefixes)?),
        };
        command = command.stream(stream);
    }
    for (path, file) in &cmd.copy_in {
        let field = format!("{}[{path:?}]", at("copyIn"));
        check_path(&field, path)?;
        command = command.copy_in(match file {
            CmdFile::Symlink(target) => {
                if target.is_empty() || target.contains('\0') || target.len() > MAX_PATH_LEN {
                    return Err(ApiError::bad(format!(
                        "{field}.symlink must be a non-empty path without NUL bytes"
                    )));
                }
                CopyIn::symlink(path.clone(), target.clone())
            }
            CmdFile::Collector { .. } => {
                return Err(ApiError::bad(format!(
                    "{field} is a collector, which only files takes"
                )));
            }
            file => CopyIn::file(path.clone(), source(&field, file, store, prefixes)?),
        });
    }
    // Names a collector or a proxy fills are theirs, as in go-judge.
    let taken =
        |name: &str| collectors.contains(&name) || proxy_names.iter().any(|(_, n)| n == name);
    for (list, field, store) in [
        (&cmd.copy_out, "copyOut", false),
        (&cmd.copy_out_cached, "copyOutCached", true),
    ] {
        let mut added: Vec<&str> = Vec::new();
        for (j, file) in list.iter().enumerate() {
            // Named twice in one list, it is copied out once.
            if taken(&file.name) || added.contains(&file.name.as_str()) {
                continue;
            }
            added.push(&file.name);
            check_path(&at(&format!("{field}[{j}]")), &file.name)?;
            command = command.copy_out(CopyOut {
                path: file.name.clone(),
                optional: file.optional,
                store,
            });
        }
    }
    let copy_out_limit = match cmd.copy_out_max {
        0 => defaults.copy_out_limit,
        max => max,
    };
    Ok(command.copy_out_limit(copy_out_limit, cmd.copy_out_truncate))
}

/// The content of a `files` entry or a copy-in.
fn source(
    field: &str,
    file: &CmdFile,
    store: &FileStore,
    prefixes: &[SrcPrefix],
) -> Result<Source, ApiError> {
    match file {
        CmdFile::Content(bytes) => Ok(Source::Bytes(Arc::from(bytes.as_slice()))),
        CmdFile::FileId(id) => {
            if store.contains(id) {
                Ok(Source::Stored(id.clone()))
            } else {
                Err(ApiError::bad(format!(
                    "{field}.fileId: no stored file has the id {id:?}"
                )))
            }
        }
        CmdFile::Src(path) => {
            open_src(field, path, prefixes).map(|file| Source::File(Arc::new(file)))
        }
        CmdFile::StreamIn | CmdFile::StreamOut => Err(ApiError::bad(format!(
            "{field}: streamIn and streamOut are for a program's files, not copyIn"
        ))),
        CmdFile::Collector { .. } | CmdFile::Symlink(_) => {
            unreachable!("callers take collectors and links apart")
        }
    }
}

/// Opens a host file a request names, if it lies below an allowed prefix,
/// spelled from the prefix as given or from its real path, as go-judge
/// takes it. The path is resolved whole (its links and `..`), and must
/// lie below the real path of a prefix, which it is then opened beneath
/// (`RESOLVE_BENEATH`) without following any link (`RESOLVE_NO_SYMLINKS`):
/// a link swapped in after the check makes the open fail, so nothing
/// outside the prefixes is opened. It is opened now, so that nothing can
/// be swapped in between the check and the run.
fn open_src(field: &str, path: &str, prefixes: &[SrcPrefix]) -> Result<File, ApiError> {
    if prefixes.is_empty() {
        return Err(ApiError::bad(format!(
            "{field}.src: this server takes no host files (start it with --src-prefix DIR to \
             allow those under DIR)"
        )));
    }
    let requested = std::path::Path::new(path);
    if !requested.is_absolute() {
        return Err(ApiError::bad(format!(
            "{field}.src {path:?} is not an absolute path"
        )));
    }
    let Some(named) = prefixes
        .iter()
        .find(|prefix| prefix.rest(requested).is_some())
    else {
        return Err(ApiError::bad(format!(
            "{field}.src {path:?} is not under an allowed prefix ({})",
            prefixes
                .iter()
                .map(SrcPrefix::shown)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let leads_out = || {
        ApiError::bad(format!(
            "{field}.src {path:?} leads out of {} (through `..` or a symbolic link)",
            named.shown()
        ))
    };
    let resolved = std::fs::canonicalize(requested).map_err(|e| {
        // Told as the prefix's directory sees it, so that a path leading
        // out says so whether or not what it leads to exists.
        let beneath = rustix::fs::openat2(
            named.dir.as_fd(),
            named.rest(requested).unwrap_or(requested),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        match beneath {
            Err(rustix::io::Errno::XDEV) => leads_out(),
            _ => ApiError::bad(format!("{field}.src: cannot open {path:?}: {e}")),
        }
    })?;
    let Some((prefix, rest)) = prefixes.iter().find_map(|prefix| {
        resolved
            .strip_prefix(&prefix.path)
            .ok()
            .map(|rest| (prefix, rest))
    }) else {
        return Err(leads_out());
    };
    let rest = if rest.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        rest
    };
    let fd = rustix::fs::openat2(
        prefix.dir.as_fd(),
        rest,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => ApiError::bad(format!(
            "{field}.src {path:?} changed while it was opened (a symbolic link or a move \
             under {})",
            prefix.shown()
        )),
        e => ApiError::bad(format!(
            "{field}.src: cannot open {path:?}: {}",
            std::io::Error::from(e)
        )),
    })?;
    let is_file = rustix::fs::fstat(&fd)
        .map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file())
        .unwrap_or(false);
    if !is_file {
        return Err(ApiError::bad(format!(
            "{field}.src {path:?} is not a regular file"
        )));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())
        .map_err(|e| ApiError::bad(format!("{field}.src: cannot read {path:?}: {e}")))?;
    Ok(File::from(fd))
}

/// A path of copyIn or copyOut: relative to the work directory, or
/// absolute inside the container, never with a `..` component.
fn check_path(field: &str, path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Err(ApiError::bad(format!("{field}: the path is empty")));
    }
    if path.contains('\0') {
        return Err(ApiError::bad(format!("{field}: the path holds a NUL byte")));
    }
    if path.len() > MAX_PATH_LEN - 64 {
        return Err(ApiError::bad(format!(
            "{field}: the path is {} bytes long, too long",
            path.len()
        )));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(ApiError::bad(format!(
            "{field}: the path {path:?} has a `..` component, which could lead out of the work \
             directory"
        )));
    }
    if path
        .trim_end_matches('/')
        .split('/')
        .all(|part| part.is_empty() || part == ".")
    {
        return Err(ApiError::bad(format!(
            "{field}: the path {path:?} names no file"
        )));
    }
    Ok(())
}

/// A CPU list as `cpuset` writes them: `0-3,6`.
fn cpu_set(text: &str) -> Result<rustix::thread::CpuSet, String> {
    let mut set = rustix::thread::CpuSet::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("{n:?} is not a CPU number"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("the range {part} runs backwards"));
        }
        if last >= rustix::thread::CpuSet::MAX_CPU {
            return Err(format!(
                "CPU {last} is beyond the largest, {}",
                rustix::thread::CpuSet::MAX_CPU - 1
            ));
        }
        for cpu in first..=last {
            set.set(cpu);
        }
    }
    Ok(set)
}

/// go-judge's status for a verdict: its name in JSON, its number in
/// gRPC.
pub fn status_of(verdict: Verdict) -> StatusType {
    match verdict {
        Verdict::Ok => StatusType::Accepted,
        Verdict::NonzeroExit => StatusType::NonZeroExitStatus,
        Verdict::Signalled => StatusType::Signalled,
        Verdict::TimeLimit | Verdict::WallTimeLimit => StatusType::TimeLimitExceeded,
        Verdict::MemoryLimit => StatusType::MemoryLimitExceeded,
        Verdict::OutputLimit => StatusType::OutputLimitExceeded,
        Verdict::DisallowedSyscall => StatusType::DangerousSyscall,
        Verdict::FileError => StatusType::FileError,
        _ => StatusType::InternalError,
    }
}

/// go-judge's status of each result, for the per-run log line.
pub fn status_names(results: &[hutch_host::CommandResult]) -> Vec<&'static str> {
    results.iter().map(|r| status_name(r.verdict)).collect()
}

/// go-judge's status string for a verdict.
pub fn status_name(verdict: Verdict) -> &'static str {
    match status_of(verdict) {
        StatusType::Accepted => "Accepted",
        StatusType::NonZeroExitStatus => "Nonzero Exit Status",
        StatusType::Signalled => "Signalled",
        StatusType::TimeLimitExceeded => "Time Limit Exceeded",
        StatusType::MemoryLimitExceeded => "Memory Limit Exceeded",
        StatusType::OutputLimitExceeded => "Output Limit Exceeded",
        StatusType::DangerousSyscall => "Dangerous Syscall",
        StatusType::FileError => "File Error",
        _ => "Internal Error",
    }
}

/// A result's `error`: hutch's words for what failed, or, for an output
/// limit a collector gave (not the program's `RLIMIT_FSIZE`), the status's
/// name, as go-judge puts it there.
pub(crate) fn error_of(result: &CommandResult) -> String {
    let collector_over = result.verdict == Verdict::OutputLimit
        && result
            .exec
            .as_ref()
            .is_some_and(|exec| exec.status != hutch_host::protocol::Status::OutputLimit);
    match &result.error {
        Some(error) => error.clone(),
        None if collector_over => status_name(Verdict::OutputLimit).into(),
        None => String::new(),
    }
}

/// A command's result as go-judge writes it.
pub fn to_result(result: CommandResult) -> RunResult {
    let exit_status = result.exit_status();
    let error = error_of(&result);
    let (time, memory, run_time, proc_peak) = (
        result.cpu_time_ns(),
        result.memory_bytes(),
        result.wall_time_ns(),
        result.processes_peak().map_or(0, u64::from),
    );
    RunResult {
        status: status_name(result.verdict),
        exit_status,
        error,
        time,
        memory,
        run_time,
        proc_peak,
        files: result
            .files
            .into_iter()
            .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
            .collect(),
        file_ids: result.stored,
        file_error: result
            .file_errors
            .into_iter()
            .map(|e| FileErrorJson {
                name: e.name,
                kind: e.kind.as_str(),
                message: e.message,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_read_as_cpuset_writes_them() {
        let set = cpu_set("0-2,5").unwrap();
        assert!((0..=2).all(|cpu| set.is_set(cpu)) && set.is_set(5));
        assert!(!set.is_set(3) && !set.is_set(4) && !set.is_set(6));
        assert!(cpu_set("3-1").unwrap_err().contains("backwards"));
        assert!(cpu_set("x").unwrap_err().contains("not a CPU number"));
        assert!(cpu_set("99999").unwrap_err().contains("beyond"));
    }

    #[test]
    fn a_request_without_commands_is_refused_whichever_api_it_came_from() {
        let store = FileStore::temporary().unwrap();
        let defaults = crate::Config::default().defaults;
        let empty = RunRequest {
            request_id: String::new(),
            cmd: Vec::new(),
            pipe_mapping: Vec::new(),
        };
        let error = to_job(&empty, &defaults, 2, &store, &[]).unwrap_err();
        assert_eq!(
            error.message,
            "no cmd provided: cmd must list at least one command"
        );
    }

    #[test]
    fn an_output_limit_a_collector_gave_says_so_in_error() {
        use hutch_host::protocol::{Status, Termination};
        let ran = |status, termination| hutch_host::protocol::ExecResult {
            status,
            termination,
            user_time_ns: 0,
            system_time_ns: 0,
            memory_bytes: 0,
            wall_time_ns: 0,
            accounting: hutch_host::protocol::Accounting::Rusage,
            error: None,
            processes_peak: None,
        };
        let result = |verdict, exec| CommandResult {
            verdict,
            exec: Some(exec),
            files: Default::default(),
            stored: Default::default(),
            file_errors: Vec::new(),
            error: None,
        };
        // Stopped by the server for its output, or over a collector after
        // it ended well.
        let stopped = result(
            Verdict::OutputLimit,
            ran(Status::Signalled, Termination::Signalled(9)),
        );
        assert_eq!(error_of(&stopped), "Output Limit Exceeded");
        let ended = result(
            Verdict::OutputLimit,
            ran(Status::Ok, Termination::Exited(0)),
        );
        assert_eq!(to_result(ended).error, "Output Limit Exceeded");
        // The program's own file-size limit: no error, as in go-judge.
        let fsize = result(
            Verdict::OutputLimit,
            ran(Status::OutputLimit, Termination::Signalled(25)),
        );
        assert_eq!(error_of(&fsize), "");
        // Any other status keeps its error, or none.
        let nonzero = result(
            Verdict::NonzeroExit,
            ran(Status::NonzeroExit, Termination::Exited(3)),
        );
        assert_eq!(error_of(&nonzero), "");
    }

    #[test]
    fn paths_may_not_climb_out() {
        assert!(check_path("f", "a/b.txt").is_ok());
        assert!(check_path("f", "/tmp/x").is_ok());
        for bad in ["", "../x", "a/../../x", "..", ".", "/", "a\0b"] {
            assert!(check_path("f", bad).is_err(), "{bad:?} must be refused");
        }
    }
}
