#![no_main]
//! The input, or a mutation of the valid index (first byte odd), as the index file of an
//! intact segment. One store directory per process, laid out anew for each input.
use libfuzzer_sys::fuzz_target;
use rmqraft::config::FlusherKind;
use rmqraft::store::Flusher;
use rmqraft_fuzz::StoreImage;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Fixture {
    dir: PathBuf,
    flusher: Flusher,
    image: StoreImage,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rmqraft-fuzz-idx-{}", std::process::id()));
        let flusher = Flusher::start(FlusherKind::Pwrite).expect("flusher");
        let image = rmqraft_fuzz::store_image(&dir, &flusher, 40);
        Fixture {
            dir,
            flusher,
            image,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let index = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => {
            rmqraft_fuzz::mutate(&f.image.index, &rmqraft_fuzz::ops_from(rest))
        }
        _ => data.to_vec(),
    };
    rmqraft_fuzz::index_recovery(&f.dir, &f.flusher, &f.image, &index);
});
