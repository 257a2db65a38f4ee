//! The one `leasehold` binary. Each subcommand lives in its own module and only wires the
//! library crates together; all behaviour is in the libraries.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cli_docs;
mod client_cmd;
mod demo;
mod http_util;
mod limits;
mod loadgen;
mod logging;
mod node_cmd;
mod openapi_cmd;
mod server_cmd;
mod vendor;

#[derive(Debug, Parser)]
#[command(
    name = "leasehold",
    version,
    about = "Leasehold flexible licensing: license node, license server, client and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a license node (vendor side).
    Node(node_cmd::NodeArgs),
    /// Vendor administration of a license node: installations, servers, licenses, usage,
    /// staff accounts, API tokens and the audit log.
    Vendor(vendor::VendorArgs),
    /// Run and administer a license server (customer side).
    Server(server_cmd::ServerArgs),
    /// Act as a licensing client: acquire or watch licenses (operators and tests).
    Client(client_cmd::ClientArgs),
    /// Measured load against a running node or server (benchmarks, not tests).
    Loadgen(loadgen::LoadgenArgs),
    /// Run a whole Leasehold system in one process: a node, a production and a backup
    /// server, and simulated clients.
    Demo(demo::DemoArgs),
    /// Print a shell completion script for `leasehold` on stdout (e.g. `leasehold
    /// completions bash > /etc/bash_completion.d/leasehold`).
    Completions(cli_docs::CompletionsArgs),
    /// Write man pages for `leasehold` and every subcommand (leasehold.1,
    /// leasehold-server-run.1, ...) into a directory.
    Man(cli_docs::ManArgs),
    /// Write or check the OpenAPI descriptions of the HTTP listeners (docs/openapi/).
    #[command(hide = true)]
    Openapi(openapi_cmd::OpenapiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => node_cmd::run(args),
        Command::Vendor(args) => vendor::run(args),
        Command::Server(args) => server_cmd::run(args),
        Command::Client(args) => client_cmd::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => cli_docs::completions(&args, Cli::command()),
        Command::Man(args) => cli_docs::man(&args, Cli::command()),
        Command::Openapi(args) => openapi_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
