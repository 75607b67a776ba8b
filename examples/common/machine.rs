//! The machine a benchmark ran on, in one line, so that a table names the CPU it measured:
//! the same shared VM can come up on different CPUs (a Zen 4 and a Zen 5 both report
//! "AMD EPYC"; only the family tells them apart, and their AVX-512 peaks differ by 2x).

/// `machine: AMD EPYC (AuthenticAMD family 26 model 2), 2 logical CPUs, kernel path avx512`,
/// from `/proc/cpuinfo` where there is one.
pub fn describe() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map_or_else(|| "?".to_string(), |(_, value)| value.trim().to_string())
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "machine: {} ({} family {} model {}), {cpus} logical CPUs, kernel path {}",
        field("model name"),
        field("vendor_id"),
        field("cpu family"),
        field("model"),
        kcp::Isa::detected()
    )
}
