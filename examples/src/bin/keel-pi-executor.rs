//! `keel-pi-executor`: the pi framework's executor, started by a Keel agent (see
//! `keel_examples::pi::executor`).

fn main() -> anyhow::Result<()> {
    keel_actors::executor::run_executor(keel_examples::pi::PiExecutor::default())
}
