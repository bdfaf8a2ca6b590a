use brainsynth::data::store::read_store;
use brainsynth::train::profile::SegProfile;
use brainsynth::train::seg::{train_segmenter, SegKind};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = read_store("/tmp/st3/slices.store").unwrap();
    let subjects = store.subjects();
    let train: Vec<_> = store.slices.iter().filter(|s| subjects[..15].contains(&s.subject)).cloned().collect();
    let val: Vec<_> = store.slices.iter().filter(|s| subjects[15..18].contains(&s.subject)).cloned().collect();
    let p = SegProfile::quick();
    let mut cfg = p.train_config(SegKind::parse(&args[1]).unwrap(), 0);
    cfg.iterations = args[2].parse().unwrap();
    cfg.lr = args[3].parse().unwrap();
    cfg.val_every = 50;
    cfg.augment = if args.len() > 4 { None } else { cfg.augment };
    let dir = format!("/tmp/dbg-{}", std::process::id());
    let o = train_segmenter(&cfg, &train, &val, std::path::Path::new(&dir), &mut |s| eprintln!("{s}")).unwrap();
    for (i, l) in o.loss_curve.iter().step_by(10) { eprint!("{i}:{l:.3} "); }
    eprintln!();
}
