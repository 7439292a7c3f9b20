fn main() {
    std::process::exit(netbootd::cli::main());
}
