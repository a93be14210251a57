"""Write real DICOM series (pydicom) from a volume, with the geometry and the faults a test asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def _new_instance(sop_class: str) -> Dataset:
    """An empty dataset of `sop_class` with its file meta (explicit VR little endian) and a fresh UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def write_series(folder: Path, volume: np.ndarray, spacing=(0.9, 0.8), step=2.5, origin=(-100.0, -120.0, -40.0),
                 tilt_mm: float = 0.0, canary: str = "CANARY", slope: float = 2.0, intercept: float = -50.0,
                 names: list[str] | None = None) -> list[Path]:
    """volume: (rows, cols, slices). Slice k sits at origin + k*step along z (+ k*tilt_mm along y: gantry tilt).
    Stored values are (volume - intercept) / slope, so the reader must apply RescaleSlope/Intercept."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(volume.shape[2]):
        ds = _new_instance(MRImageStorage)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "MR"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19700101", "O", "20260101", "120000"
        ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber, ds.SeriesNumber = f"{canary}^DR", "1", canary[:16], 1
        ds.PatientName = f"{canary}^PATIENT"
        ds.PatientID = f"{canary}-ID"
        ds.InstitutionName = f"{canary} Hospital"
        ds.SeriesDescription = f"{canary} T1"
        ds.add_new(0x00091010, "LO", f"{canary}-private")
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1] + k * tilt_mm, origin[2] + k * step]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = step
        ds.Rows, ds.Columns = volume.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.rint((volume[:, :, k] - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = folder / (names[k] if names else f"IM{k:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_multiframe(path: Path, volume: np.ndarray, spacing=(0.9, 0.8), step=2.5, origin=(-100.0, -120.0, -40.0),
                     frame_order: list[int] | None = None) -> Path:
    """An enhanced multi-frame image (shared + per-frame functional groups); frames may be stored out of order."""
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage

    order = frame_order or list(range(volume.shape[2]))
    ds = _new_instance(EnhancedMRImageStorage)
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "MR"
    ds.Rows, ds.Columns, ds.NumberOfFrames = volume.shape[0], volume.shape[1], len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    orientation, measures, shared = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = list(spacing), step
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orientation]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * step]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([volume[:, :, k] for k in order]).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
