#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rmqraft_fuzz::frame_decoder(data));
