//! An ordinary `wasi:cli/run` command: the host must refuse it as a mapper.

fn main() {
    println!("hello");
}
