use brainsynth::data::store::read_store;
use brainsynth::train::profile::SegProfile;
use brainsynth::train::seg::{segmentation_loss, SegKind, Segmenter};
use brainsynth::data::batch::segmenter_batch;
use brainsynth::data::rng::SplitMix64;
use brainsynth::nn::ParamStore;
use brainsynth::Tensor;
fn main() {
    let store = read_store("/tmp/st3/slices.store").unwrap();
    let p = SegProfile::quick();
    let cfg = p.train_config(SegKind::UNet, 0);
    let ps = ParamStore::new(0);
    let m = Segmenter::new(SegKind::UNet, &cfg, &ps).unwrap();
    let sl: Vec<_> = store.slices.iter().filter(|s| s.tumour_pixels() > 50).take(8).collect();
    let b = segmenter_batch(sl.iter().copied()).unwrap();
    let x = Tensor::from_vec(b.images.data.clone(), &b.images.shape).unwrap();
    let mut rng = SplitMix64::new(0);
    let outs = m.forward(&x, true, &mut rng).unwrap();
    for o in &outs { println!("out {:?}", o.shape()); }
    let loss = segmentation_loss(&outs, &m.supervision_weights(), &b.classes, 8, 64, 64).unwrap();
    println!("loss {}", loss.item().unwrap());
    loss.backward().unwrap();
    for prm in ps.params() {
        let g = prm.tensor.grad().map(|g| g.sqr().unwrap().sum_all().unwrap().item().unwrap().sqrt());
        println!("{:50} {:?} grad {:?}", prm.name, prm.tensor.shape(), g);
    }
    let fg: usize = b.classes.iter().filter(|&&c| c > 0).count();
    println!("fg pixels {fg} of {}", b.classes.len());
}
