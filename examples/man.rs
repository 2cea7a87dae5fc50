//! Writes damon's man page, damon(1), to standard output:
//!
//!     cargo run --example man > damon.1 && man -l damon.1
//!
//! NAME, SYNOPSIS, DESCRIPTION and OPTIONS come from the same definition as `--help` (the
//! settings table in src/config/cli.rs, included below), so the page cannot drift from the
//! binary. The sections clap knows nothing of (what damon does, exit status, the Nomad
//! variables it reads, its files) are written here; tests/docs.rs checks the page names every
//! flag, every variable and every Nomad variable damon's source reads.
//!
//! An example rather than a part of damon: the release ships the page (scripts/release,
//! .github/workflows/release.yml), and damon itself stays without a man page generator.

use std::io::{self, Write};

use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

// The table's constants the parser uses are not all read here.
#[allow(dead_code)]
#[path = "../src/config/cli.rs"]
mod cli;

fn main() {
    let page = page();
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(page.as_bytes()).and_then(|_| out.flush()) {
        eprintln!("man: cannot write the page: {}", e);
        std::process::exit(1);
    }
}

fn page() -> String {
    let man = Man::new(cli::cli())
        .title("DAMON")
        .section("1")
        .source(format!("damon {}", cli::VERSION))
        .manual("User Commands");
    let mut out = Vec::new();
    let generated: io::Result<()> = (|| {
        man.render_title(&mut out)?;
        // Variable names such as DAMON_ENFORCE_MEMORY_LIMIT are not to be hyphenated.
        out.extend_from_slice(b".nh\n");
        man.render_name_section(&mut out)?;
        out.extend_from_slice(synopsis().render().as_bytes());
        man.render_description_section(&mut out)?;
        out.extend_from_slice(described().render().as_bytes());
        man.render_options_section(&mut out)?;
        out.extend_from_slice(the_rest().render().as_bytes());
        // No VERSION section: clap's names the target of the build that wrote the page, and the
        // page serves every target; the footer names the version.
        Ok(())
    })();
    generated.expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("the page is UTF-8")
}

fn paragraph(roff: &mut Roff, text: &str) {
    roff.control("PP", []).text([roman(text)]);
}

/// A tagged paragraph: `term` in bold, then its text indented.
fn item(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", []).text([bold(term)]).text([roman(text)]);
}

/// clap's synopsis lists every flag without its value; the usage line says more.
fn synopsis() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([
        bold("damon"),
        roman(" [OPTIONS] [--] "),
        italic("COMMAND"),
        roman(" ["),
        italic("ARGS"),
        roman("]..."),
    ]);
    roff.control("br", []);
    roff.text([bold("damon --check"), roman(" [OPTIONS]")]);
    roff.control("br", []);
    roff.text([bold("damon"), roman(" [--version]")]);
    roff
}

/// What damon does, after clap's one-line description.
fn described() -> Roff {
    let mut roff = Roff::new();
    paragraph(
        &mut roff,
        "damon runs COMMAND in front of Nomad's raw_exec driver, which gives a process no containment of its own. \
         It puts COMMAND and every process it starts into a cgroup (Linux: v2, or v1 where the host has it) \
         or a Job Object (Windows), enforces the CPU, memory, process and IO limits it is given, \
         passes stop signals on and stops the whole tree, exits with COMMAND's exit status, \
         serves Prometheus metrics about the tree and writes a JSON log.",
    );
    paragraph(
        &mut roff,
        "Every setting is a flag and an environment variable; the flag wins over the variable, \
         the variable over the Nomad variable it falls back to. Under Nomad the limits come from the job's \
         resources block through NOMAD_CPU_LIMIT, NOMAD_MEMORY_LIMIT and NOMAD_MEMORY_MAX_LIMIT, \
         so a task that sets nothing of damon's gets what the job asks for. \
         A bad value is refused with exit status 125, naming the flag or variable and the value, \
         and nothing is started.",
    );
    paragraph(
        &mut roff,
        "With no arguments damon prints its version. damon --check reports what damon can use on this host \
         (cgroup version and controllers, Job Object features, sandbox) and the configuration it would apply, \
         then exits.",
    );
    roff
}

/// EXIT STATUS, ENVIRONMENT, FILES, SEE ALSO.
fn the_rest() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    item(&mut roff, "N", "COMMAND's own exit status.");
    item(
        &mut roff,
        "128+N",
        "COMMAND died of signal N (137: killed, for example by the memory limit or at the end of the kill timeout).",
    );
    item(
        &mut roff,
        "125",
        "damon failed: a bad setting, or the container could not be made; the message says which and the way out.",
    );
    item(&mut roff, "126", "COMMAND cannot be run (not executable, permission denied).");
    item(&mut roff, "127", "COMMAND was not found.");

    roff.control("SH", ["ENVIRONMENT"]);
    paragraph(&mut roff, "Each option above names its DAMON_ variable. damon also reads what Nomad sets for a task:");
    item(
        &mut roff,
        "NOMAD_CPU_LIMIT, NOMAD_MEMORY_LIMIT, NOMAD_MEMORY_MAX_LIMIT, NOMAD_CPU_CORES",
        "The job's resources, used when the DAMON_ variable is unset.",
    );
    item(
        &mut roff,
        "NOMAD_ADDR_damon",
        "The address of a port labelled damon: the metrics server listens there unless DAMON_ADDR is set.",
    );
    item(
        &mut roff,
        "NOMAD_ALLOC_ID",
        "Set: damon runs under Nomad. It then has no kill timeout of its own unless DAMON_KILL_TIMEOUT is set: \
         the job's kill_timeout ends a stop, and damon's guard ends the tree and removes the container when Nomad kills damon. \
         It also names damon's cgroup and labels every log line and metric.",
    );
    item(
        &mut roff,
        "NOMAD_DC, NOMAD_REGION, NOMAD_JOB_NAME, NOMAD_GROUP_NAME, NOMAD_TASK_NAME, NOMAD_ALLOC_INDEX",
        "Copied into every log line and metric as nomad_dc, nomad_region, and so on. NOMAD_TASK_NAME also names the log file.",
    );
    item(
        &mut roff,
        "NOMAD_ALLOC_DIR, NOMAD_TASK_DIR, NOMAD_SECRETS_DIR",
        "The log goes to NOMAD_ALLOC_DIR/logs; the IO limits apply by default to the disks that hold the alloc and task directories; \
         a sandboxed workload may write the three directories.",
    );

    roff.control("SH", ["FILES"]);
    roff.control("TP", []).text([italic("$NOMAD_ALLOC_DIR/logs/$NOMAD_TASK_NAME.damon.log")]).text([roman(
        "damon's JSON log, one object per line, rotated at --log-max-size into --log-max-files files; \
         outside Nomad damon.log in the working directory. COMMAND's own output goes where damon's does.",
    )]);

    roff.control("SH", ["EXAMPLES"]);
    paragraph(&mut roff, "Run a server with 256 MiB and 500 MHz, metrics on port 9100:");
    roff.control("IP", [])
        .text([roman("DAMON_MEMORY_LIMIT=256 DAMON_CPU_LIMIT=500 DAMON_ADDR=:9100 damon ./server --port 8080")]);
    paragraph(&mut roff, "What damon would do on this host, without starting anything:");
    roff.control("IP", []).text([roman("damon --check --memory-limit 256")]);

    roff.control("SH", ["SEE ALSO"]);
    paragraph(
        &mut roff,
        "The documentation in the damon repository: README.md, docs/configuration.md (every setting), \
         docs/nomad.md (jobs and stopping under Nomad), docs/troubleshooting.md (every start-up failure and what to do), \
         docs/metrics.md and docs/logs.md.",
    );
    roff.control("PP", []).text([
        bold("systemd-run"),
        roman("(1), "),
        bold("cgexec"),
        roman("(1), "),
        bold("cgroups"),
        roman("(7), "),
        bold("landlock"),
        roman("(7), "),
        bold("seccomp"),
        roman("(2)"),
    ]);
    roff
}
