//! `brainsynth export`: a slice store (real or synthetic) as files other tools train on.

use std::path::PathBuf;

use crate::cli::{Args, CliError, Command, usage};
use crate::data::export::{ExportFormat, export_store};
use crate::train::interrupt::SignalGuard;

/// `brainsynth export`.
pub const EXPORT: Command = Command {
    name: "export",
    summary: "write a slice store as an nnU-Net dataset, NIfTI slices or PNGs",
    help: "\
Usage: brainsynth export --store FILE --out DIR --format nnunet|nifti|png

Write every slice of a store (real or synthetic) as one case named <subject>_z<index>, so a
synthetic set can train nnU-Net, MONAI or any other tool directly. DIR is written under a
temporary name and appears only when complete (a failed or interrupted export leaves nothing);
it must not exist or be empty.

Formats:
  nnunet   nnU-Net v2 raw dataset: imagesTr/<case>_0000.nii.gz .. _0003 (T1, T1ce, T2, FLAIR),
           labelsTr/<case>.nii.gz and dataset.json. nnU-Net needs consecutive labels, so the
           BraTS labels 0, 1, 2, 4 are written as 0, 1, 2, 3 (enhancing = 3). Put DIR under
           nnUNet_raw as DatasetNNN_Name.
  nifti    one BraTS-style folder per slice: <case>/<case>_t1.nii.gz, _t1ce, _t2, _flair, _seg
           (labels 0, 1, 2, 4).
  png      <case>_0000.png .. _0003.png (16-bit grey: value*257) and <case>_seg.png (8-bit grey,
           labels 0, 1, 2, 4).

NIfTI files are uint8, w x h x 1 voxels of 1 mm, in the BraTS orientation (LPS).

Options:
  --store FILE       slice store to export (required)
  --out DIR          folder to create (required)
  --format F         nnunet, nifti or png (default nnunet)
  -h, --help         this help
",
    run: cmd_export,
};

fn cmd_export(mut args: Args) -> Result<(), CliError> {
    let store = PathBuf::from(args.required("--store")?);
    let out = PathBuf::from(args.required("--out")?);
    let format = match args.value("--format")?.as_deref() {
        None => ExportFormat::NnUnet,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| usage(format!("--format {f:?}: expected nnunet, nifti or png")))?,
    };
    args.finish()?;
    // Ctrl-C / SIGTERM raise a flag: the export stops and its temporary folder is removed.
    let _guard = SignalGuard::install();
    let sum = export_store(&store, &out, format)?;
    eprintln!(
        "wrote {} ({} cases, {} files)",
        out.display(),
        sum.cases,
        sum.files
    );
    Ok(())
}
