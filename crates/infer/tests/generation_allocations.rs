//! Generation on the host allocates nothing per token: state, logits and sampling buffers are
//! kept from token to token. Counted with a global allocator of this test binary's own.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use lstm_lm_infer::{Generator, SamplingConfig, on_pool};
use lstm_lm_model::LanguageModelConfig;
use lstm_lm_model::burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The `lm` benchmark's model (large enough for the threaded paths), every sampling mode, on a
/// pool thread as `lstm-lm generate` runs (from outside the pool, rayon's job queue allocates a
/// block every 63 parallel regions).
#[test]
fn generating_a_token_allocates_nothing() {
    let device = Device::flex();
    device.seed(3);
    let model = LanguageModelConfig::new(10_000)
        .with_embedding_size(256)
        .with_hidden_size(256)
        .with_num_layers(2)
        .init(&device)
        .unwrap();
    let modes = [
        SamplingConfig::default(),
        SamplingConfig {
            greedy: true,
            ..Default::default()
        },
        SamplingConfig {
            top_k: Some(40),
            ..Default::default()
        },
        SamplingConfig {
            top_p: Some(0.9),
            temperature: 0.8,
            ..Default::default()
        },
    ];
    for sampling in modes {
        let during = on_pool(|| allocations_in_50_tokens(&model, &device, &sampling));
        assert_eq!(during, 0, "{sampling:?}: {during} allocations in 50 tokens");
    }
}

fn allocations_in_50_tokens(
    model: &lstm_lm_model::LanguageModel,
    device: &Device,
    sampling: &SamplingConfig,
) -> usize {
    let mut generator = Generator::new(model.clone(), device.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    generator.feed(&[1, 2, 3]).unwrap();
    let mut step = |generator: &mut Generator| {
        let id = generator.sample(sampling, &[0], &mut rng).unwrap();
        generator.feed(&[id]).unwrap();
    };
    // The first tokens size the per-thread buffers and start the thread pool.
    for _ in 0..5 {
        step(&mut generator);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..50 {
        step(&mut generator);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}
