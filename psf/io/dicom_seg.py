"""DICOM-SEG out (highdicom): a segmentation object that references the source series and shares
its frame of reference, so PACS and viewers show it on the scan.

The reader never passes headers on; this writer re-reads the source files' headers itself, on the
client, beside them. Nothing here goes to the server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf import __version__
from psf.errors import MissingDependency, PsfError
from psf.io.atomic import atomic_path


def write_dicom_seg(path: Path, mask: np.ndarray, source_files: tuple[Path, ...], labels: list[str]) -> Path:
    """mask: (cols, rows, slices) uint8 labels in the reader's voxel order; labels[0] is background."""
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
    except ImportError as exc:
        raise MissingDependency("highdicom (DICOM-SEG writing)", "dicom") from exc
    datasets = [with_type2_attributes(pydicom.dcmread(p, stop_before_pixels=True)) for p in source_files]
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        raise PsfError(f"{source_files[0]}: DICOM-SEG for enhanced multi-frame sources is not supported yet; "
                       "use the NIfTI mask")
    normal = np.cross(*np.array(datasets[0].ImageOrientationPatient, float).reshape(2, 3))
    datasets.sort(key=lambda ds: float(np.array(ds.ImagePositionPatient, float) @ normal))
    frames = np.ascontiguousarray(mask.transpose(2, 1, 0)).astype(np.uint8)  # (slices, rows, cols)
    if frames.shape[0] != len(datasets):
        raise PsfError(f"mask has {frames.shape[0]} slices, the series {len(datasets)} files")
    algorithm = hd.AlgorithmIdentificationSequence(name="privacy-sf", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        )
        for number, name in enumerate(labels[1:], start=1)
    ]
    if not segments:
        raise PsfError(f"the bundle's labels {labels} name no structure besides background; no DICOM-SEG segment to write")
    try:
        seg = _segmentation(hd, datasets, frames, segments, omit_empty=bool(frames.any()))
    except (AttributeError, ValueError, TypeError) as exc:
        raise PsfError(f"{source_files[0].parent}: cannot build a DICOM-SEG for this series ({type(exc).__name__}: {exc})") from exc
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


# Type-2 attributes of the patient and study modules (PS3.3 C.7.1.1, C.7.2.1): they must be present but may be empty.
# De-identified and converter-made series often drop them; highdicom copies them from the source into the SEG.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


def with_type2_attributes(dataset):
    """The dataset (an in-memory copy read for this purpose; the source file is never written) with every missing
    type-2 patient/study attribute present and empty, as the standard allows."""
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset


def _segmentation(hd, datasets, frames, segments, omit_empty: bool = True):
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="privacy-sf", manufacturer_model_name="privacy-sf",
        software_versions=__version__, device_serial_number="0", omit_empty_frames=omit_empty,
    )
