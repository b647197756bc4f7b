//! Writes the frame of every sample message to `<dir>/request/<name>` and
//! `<dir>/reply/<name>`, for use as a fuzzing seed corpus.
//!
//! ```text
//! cargo run -p hutch-protocol --example golden_corpus -- <dir>
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::{fs, path::Path, process::ExitCode};

fn write_all(dir: &Path, frames: &[(&str, Vec<u8>)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, frame) in frames {
        fs::write(dir.join(name), frame)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: golden_corpus <dir>");
        return ExitCode::from(2);
    };
    let dir = Path::new(&dir);
    let requests: Vec<_> = common::request_samples()
        .iter()
        .map(|(name, request)| (*name, common::request_frame(request)))
        .collect();
    let replies: Vec<_> = common::reply_samples()
        .iter()
        .map(|(name, reply)| (*name, common::reply_frame(reply)))
        .collect();
    let written = write_all(&dir.join("request"), &requests)
        .and_then(|()| write_all(&dir.join("reply"), &replies));
    match written {
        Ok(()) => {
            println!(
                "wrote {} request and {} reply frames under {}",
                requests.len(),
                replies.len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("golden_corpus: {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}
