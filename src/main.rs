fn main() {
    std::process::exit(childguard::cli::main());
}
