//! Cost of userspace TSO/GRO: ns per 64 KiB TCP super-frame segmented into MTU-1500 frames
//! (IPv4 and IPv6, MSS 1448 with timestamps, as Linux sends), and ns per frame coalesced
//! back into super-frames; plus the checksum alone over 64 KiB.
//!
//! Run: cargo bench --bench offload -- --quick

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vdens_fast::wire::csum;
use vdens_fast::wire::gro::{Coalescer, BUF_LEN};
use vdens_fast::wire::gso::{self, Layout};
use vdens_fast::wire::vnet::{self, VnetHdr};

const MSS: usize = 1448;

/// A TCP super-frame as a tap with TSO hands it out: 12 bytes of options (timestamps), 44 full
/// segments and a short one (64 KiB - headers of payload).
fn super_frame(v6: bool) -> (VnetHdr, Vec<u8>) {
    let l3 = 14;
    let l4 = l3 + if v6 { 40 } else { 20 };
    let data = l4 + 32;
    let payload = 65535 - (data - l3);
    let mut f = vec![0u8; data + payload];
    for (i, b) in f.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    if v6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[l3] = 0x60;
        let pl = (f.len() - l4) as u16;
        f[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
        f[l3 + 6] = 6;
        f[l3 + 7] = 64;
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[l3] = 0x45;
        f[l3 + 1] = 0;
        let tot = (f.len() - l3) as u16;
        f[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
        f[l3 + 6] = 0x40;
        f[l3 + 7] = 0;
        f[l3 + 8] = 64;
        f[l3 + 9] = 6;
    }
    f[l4 + 12] = 8 << 4;
    f[l4 + 13] = gso::TCP_ACK | gso::TCP_PSH;
    f[l4 + 20..l4 + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    let lay = Layout::parse_tcp(&f).unwrap();
    let ph = csum::fold(lay.pseudo(&f, f.len() - l4) as u64);
    f[l4 + 16..l4 + 18].copy_from_slice(&ph.to_be_bytes());
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: if v6 { vnet::GSO_TCPV6 } else { vnet::GSO_TCPV4 },
        hdr_len: data as u16,
        gso_size: MSS as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
        num_buffers: 0,
    };
    (hdr, f)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("offload");
    for v6 in [false, true] {
        let name = if v6 { "v6" } else { "v4" };
        let (hdr, f) = super_frame(v6);
        let mut scratch = vec![0u8; 2048];
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("segment_64k/{name}"), |b| {
            b.iter(|| {
                let mut n = 0usize;
                gso::segment(&hdr, black_box(&f), &mut scratch, |s| n += s.len()).unwrap();
                black_box(n)
            })
        });
        let stride = 1536;
        let mut slab = vec![0u8; stride * 64];
        let mut lens = [0usize; 64];
        g.bench_function(format!("segment_64k_to_slab/{name}"), |b| {
            b.iter(|| gso::segment_to_slab(&hdr, black_box(&f), &mut slab, stride, &mut lens).unwrap())
        });
        let mut frames = Vec::new();
        gso::segment(&hdr, &f, &mut scratch, |s| frames.push(s.to_vec())).unwrap();
        let mut co = Coalescer::new(vec![0u8; BUF_LEN]);
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(format!("coalesce_per_frame/{name}"), |b| {
            b.iter(|| {
                let mut out = 0usize;
                let mut emit = |h: &VnetHdr, o: &[u8]| out += o.len() + h.gso_size as usize;
                for s in &frames {
                    co.push(black_box(s), &mut emit);
                }
                co.flush(&mut emit);
                black_box(out)
            })
        });
    }
    let (_, f) = super_frame(false);
    g.throughput(Throughput::Bytes(f.len() as u64));
    g.bench_function("checksum_64k", |b| b.iter(|| csum::checksum(black_box(&f))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
