//! The pure hot pieces: VNL parsing (once per interface, but users script thousands), the
//! 2-byte-length stream framing (per frame on =cmd / cmd:// links) and the switch's forwarding
//! decision with its MAC table (per frame on switch:// and hub://).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vdens_fast::switch::{Forwarder, MacTable};
use vdens_fast::vnl;
use vdens_fast::wire::stream::{self, Decoder};

fn vnl_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("vnl");
    for v in [
        "vde:///tmp/mysw[3][mode=770/group=vde]",
        "ptp:///tmp/myptp",
        "udp://127.0.0.1:5000->127.0.0.1:5001",
        "vxlan://239.0.0.1/vni=42/ttl=3/port=4789",
        "cmd://'vde_plug vde:///tmp/sw'",
    ] {
        g.bench_function(v.split("://").next().unwrap_or(v), |b| {
            b.iter(|| vnl::parse(black_box(v)))
        });
    }
    g.finish();
}

fn stream_framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    for size in [64usize, 1500, 9000] {
        // 64 frames back to back, then fed to the decoder in 4 KiB reads, as from a pipe.
        let mut bytes = Vec::new();
        for i in 0..64 {
            bytes.extend_from_slice(&stream::header(size));
            bytes.extend(vec![i as u8; size]);
        }
        g.throughput(Throughput::Elements(64));
        g.bench_function(format!("decode/{size}"), |b| {
            let mut dst = vec![0u8; 9234];
            b.iter_batched(
                Decoder::new,
                |mut dec| {
                    let mut frames = 0;
                    for chunk in bytes.chunks(4096) {
                        let mut off = 0;
                        while off < chunk.len() {
                            let (k, ev) = dec.feed(&chunk[off..], &mut dst);
                            off += k;
                            frames += ev.is_some() as usize;
                        }
                    }
                    frames
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn switch_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch");
    for stations in [16u32, 200, 4000] {
        let frames: Vec<Vec<u8>> = (0..stations)
            .map(|i| {
                let s = i.to_be_bytes();
                let d = ((i + 1) % stations).to_be_bytes();
                let mut f = vec![
                    2, 0, d[0], d[1], d[2], d[3], 2, 0, s[0], s[1], s[2], s[3], 0x08, 0x00,
                ];
                f.resize(64, 0);
                f
            })
            .collect();
        let mut sw = Forwarder::Switch(MacTable::new(4096, 120, 1));
        for (i, f) in frames.iter().enumerate() {
            sw.decide((i % 8) as u16, f, 0);
        }
        g.throughput(Throughput::Elements(stations as u64));
        g.bench_function(format!("decide/{stations}-stations"), |b| {
            b.iter(|| {
                for (i, f) in frames.iter().enumerate() {
                    black_box(sw.decide((i % 8) as u16, f, 1));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, vnl_parse, stream_framing, switch_decide);
criterion_main!(benches);
