use kcp::kcp_layer;
kcp_layer! { struct L { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true } }
fn main() {
    let l = L::random(1);
    let x: Vec<f32> = (0..L::IN).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut y = vec![0f32; L::OUT];
    let t = std::time::Instant::now();
    for _ in 0..20000 {
        l.forward(&x, &mut y).unwrap();
    }
    println!("{:.1} us", t.elapsed().as_secs_f64() / 20000.0 * 1e6);
}
