"""How an image or mask file becomes an array: the input rules every reader shares (``data/README.md``).

- :func:`open_verified`: open a file and check it decodes whole (a truncated or non-image file is a
  ``DataError`` naming it);
- :func:`grey_array`: an image as 8-bit greyscale; more than 8 bits are scaled by the bit depth the
  values actually use (12-bit data in a 16-bit PNG is divided by 4095, not 65535);
- :func:`mask_array`: a mask as lesion (True) / background; two values 0 and n: n is lesion; other
  masks are cut at half their range and refused when graded, multi-coloured or inverted;
- :func:`read_grey_png`, :func:`read_mask_png`, :func:`union_mask` (the union of several masks of one
  image, each the image's size).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from mtloca_lib.errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_BITS_PER_SAMPLE = 258

#: Key under which :func:`open_verified` records the file's bits per sample in ``image.info``
#: (Pillow decodes 16-bit colour to 8 bits, so the mode alone does not say it).
SAMPLE_BITS = "mtloca_bits_per_sample"
#: A mask with more than two values is refused when its mid-grey pixels (above a quarter,
#: up to three quarters of its range) exceed this share of its lesion area: the area would
#: change by more than that between a cut at a quarter and one at three quarters.
GRADED_SHARE = 0.10
#: The fix named for a mask the rules cannot read.
MASK_FIX = ("Save the mask with exactly two values, the lesion white (255) on black (0), "
            "as an 8-bit greyscale PNG.")


# ----------------------------------------------------------------------------- PNG helpers


#: What a dataset reader tells the user to do about an unreadable image.
DATASET_FIX = "replace it with an intact copy from the original dataset."


def open_verified(path: Path, fix: str = DATASET_FIX) -> Image.Image:
    """Open an image file and decode it fully, or raise DataError.

    The bytes are checked twice: ``Image.verify`` (chunk CRCs, a cut-off file) and
    a full decode. This does not depend on Pillow's global
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` switch, so a truncated file is always refused.

    Args:
        path: the image file.
        fix: the advice the error ends with (dataset readers: fetch an intact copy).
    """
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        bits = _sample_bits(data, image)
        image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error ...
        raise DataError(
            f"{path}: cannot read this image ({type(exc).__name__}: {exc}). "
            f"The file is damaged, truncated or not an image: {fix}"
        ) from exc
    image.info[SAMPLE_BITS] = bits
    return image


def _sample_bits(data: bytes, image: Image.Image) -> int:
    """Bits per sample the file stores: PNG's IHDR bit depth, TIFF's BitsPerSample, else 8."""
    if data[:8] == _PNG_SIGNATURE and len(data) > 24:
        return int(data[24])
    tags = getattr(image, "tag_v2", None)
    if tags is not None and _TIFF_BITS_PER_SAMPLE in tags:
        value = tags[_TIFF_BITS_PER_SAMPLE]
        return int(max(value) if isinstance(value, (tuple, list)) else value)
    return 8


def full_range(values: np.ndarray) -> int:
    """The largest value of the bit depth a channel uses: ``2**b - 1``, b >= 8.

    b is the smallest number of bits (at least 8) that holds the channel's largest
    value: 8-bit data gives 255 whatever its values, 12-bit data stored in a 16-bit
    file (0..4095) gives 4095, data reaching 32768 or more gives 65535.

    Args:
        values: a non-negative integer array.
    """
    top = int(values.max(initial=0))
    return (1 << max(8, top.bit_length())) - 1


def _high_depth_grey(arr: np.ndarray, path: Path | str) -> np.ndarray:
    """A 16- or 32-bit greyscale array scaled to uint8 by the bit depth it uses (full_range)."""
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise DataError(
            f"{path}: image holds negative values (down to {arr.min()}). Save it as an "
            "8- or 16-bit greyscale PNG with values from 0 up."
        )
    return np.clip(np.rint(arr / (full_range(arr) / 255.0)), 0, 255).astype(np.uint8)


def _check_16bit_colour(image: Image.Image, path: Path | str) -> None:
    """Refuse a 16-bit colour image whose values do not use the top bits (read nearly black).

    Pillow decodes 16-bit colour PNGs to their top 8 bits. That is the full-range
    reading (within one grey level) when the data use all 16 bits; data of fewer
    bits (e.g. 12-bit values 0..4095) would come out nearly black, so they are refused.
    """
    if image.info.get(SAMPLE_BITS, 8) <= 8:
        return
    colour = np.asarray(image.convert("RGB"))
    top = int(colour.max(initial=0))
    if top < 128:  # the top bit of the 16 is never set: fewer than 16 bits in use
        raise DataError(
            f"{path}: a {image.info[SAMPLE_BITS]}-bit colour image whose values use fewer "
            f"bits (its brightest channel reads {top} of 255 at 8 bits), so it would be read "
            "nearly black. Save it as a 16-bit greyscale PNG (scaled by the range it uses) "
            "or as an 8-bit PNG."
        )


def grey_array(image: Image.Image, path: Path | str = "") -> np.ndarray:
    """Convert a decoded image to a uint8 greyscale array (H, W).

    L is taken as is; RGB (and palette) images go through Pillow's ITU-R 601-2 luma,
    which returns the channel itself when the three channels are equal; an alpha
    channel is ignored. 16- and 32-bit greyscale is scaled by the bit depth its
    values use (:func:`full_range`: 12-bit data 0..4095 is divided by 4095, full
    16-bit data by 65535, 8-bit data stored in 16 bits is taken as is). A 16-bit
    colour image is read only when its values use all 16 bits (else DataError).

    Args:
        image: a loaded Pillow image.
        path: the file it came from, for error messages.
    """
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("1", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
        _check_16bit_colour(image, path)
        base = image.convert("RGB") if mode in ("P", "PA", "CMYK", "YCbCr") else image
        return np.asarray(base.convert("L"), dtype=np.uint8).copy()
    if mode.startswith("I;16") or mode == "I":
        return _high_depth_grey(np.asarray(image), path)
    raise DataError(
        f"{path}: image mode {mode!r} is not supported. Save it as 8-bit greyscale or RGB PNG."
    )


def _binarise(channel: np.ndarray, path: Path | str) -> np.ndarray:
    """Lesion pixels of one mask channel, by the mask rule (see :func:`mask_array`)."""
    values = np.unique(channel)
    if values.size and values[0] < 0:
        raise DataError(f"{path}: mask holds negative values (down to {values[0]}). {MASK_FIX}")
    if values.size == 2 and values[0] == 0:
        return channel > 0  # two values, 0 and n: n is the lesion whatever n is
    full = full_range(values)
    lesion = channel > full / 2
    area = int(np.count_nonzero(lesion))
    if area == 0:
        if values.size and values[-1] > 0:
            raise DataError(
                f"{path}: mask values run from {values[0]} to {values[-1]} ({values.size} "
                f"different values) with none above half of the {full.bit_length()}-bit range "
                f"({full // 2}), so no pixel could be read as lesion (a faint or label-index "
                f"mask?). {MASK_FIX}"
            )
        return lesion
    graded = int(np.count_nonzero((channel > full / 4) & (channel <= 3 * full / 4)))
    if graded > GRADED_SHARE * area:
        raise DataError(
            f"{path}: mask is graded (blurred, anti-aliased or an overlay on an image): "
            f"{graded} pixels lie in mid-grey against {area} lesion pixels, so the lesion's "
            f"area changes by more than {GRADED_SHARE:.0%} between a cut at a quarter and at "
            f"three quarters of the range. {MASK_FIX}"
        )
    return lesion


def _check_one_colour(colour: np.ndarray, lesion: np.ndarray, path: Path | str) -> None:
    """Refuse a colour mask whose lesion pixels are of more than one colour."""
    pixels = colour[lesion].astype(np.int64)  # (n, 3)
    if len(pixels) == 0:
        return
    lit = pixels * 2 > pixels.max(axis=1, keepdims=True)  # channels above half the pixel's brightest
    codes = np.unique(lit @ np.array([4, 2, 1]))
    if codes.size > 1:
        names = {0: "black", 4: "red", 2: "green", 1: "blue", 6: "yellow", 5: "magenta", 3: "cyan",
                 7: "white/grey"}
        raise DataError(
            f"{path}: colour mask marks pixels in {codes.size} colours "
            f"({', '.join(names[int(c)] for c in codes)}), so which one is the lesion is "
            f"ambiguous. {MASK_FIX}"
        )


def _check_not_inverted(mask: np.ndarray, path: Path | str) -> None:
    """Refuse a mask whose lesion covers the whole image border around background."""
    if min(mask.shape) < 3 or mask.all():
        return
    if mask[0].all() and mask[-1].all() and mask[:, 0].all() and mask[:, -1].all():
        raise DataError(
            f"{path}: the lesion covers every pixel of the image border and surrounds "
            "background: the mask looks inverted (lesion black on white). Invert it, so that "
            "the lesion is white (255) on black (0)."
        )


def mask_array(image: Image.Image, path: Path | str = "") -> np.ndarray:
    """Convert a decoded mask image to a bool array (H, W).

    The mask rule (``data/README.md``, "Input rules"): 1-bit is taken as is. Other
    masks are reduced to one channel (below), whose values decide:

    - exactly two values, 0 and n (any n: {0, 1}, {0, 255}, {0, 4095}): n is lesion;
    - otherwise a pixel is lesion when above half of the channel's range
      (:func:`full_range`: 127 for 8-bit data, 2047 for 12-bit data in 16 bits);
    - DataError when non-zero values exist but none is above half (a faint or
      label-index mask), when more than ``GRADED_SHARE`` of the lesion area lies
      in mid-grey (a blurred mask or an overlay: the threshold would be a guess),
      when a colour mask marks lesion pixels in several colours, or when the
      lesion covers the whole image border around background (an inverted mask).
      A mask that is one value above half everywhere is lesion everywhere.

    Channels: grey is taken as is. Colour masks (palette ones included) use the
    brightest channel, so a coloured (e.g. red) lesion on black counts. With an
    alpha channel: when alpha is constant (BUSI's RGBA masks are fully opaque) it
    is ignored; when the colour is constant and alpha varies, alpha carries the
    mask; otherwise a pixel must be bright and not fully transparent.

    Args:
        image: a loaded Pillow image.
        path: the file it came from, for error messages.
    """
    mode = image.mode
    if mode in ("P", "PA"):
        image, mode = image.convert("RGBA"), "RGBA"
    if mode == "1":
        mask = np.asarray(image, dtype=bool).copy()
    elif mode in ("L", "I") or mode.startswith("I;16"):
        mask = _binarise(np.asarray(image), path)
    elif mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(image)
        channels = arr[..., :-1] if mode in ("RGBA", "LA") else arr
        colour = channels.max(axis=-1)
        alpha = arr[..., -1]
        if mode == "RGB" or alpha.min() == alpha.max():
            mask = _binarise(colour, path)
        elif colour.min() == colour.max():
            mask = _binarise(alpha, path)
        else:
            mask = _binarise(colour, path) & (alpha > 0)
        if channels.shape[-1] == 3:
            _check_one_colour(channels, mask, path)
    else:
        raise DataError(
            f"{path}: mask mode {mode!r} is not supported. Save the mask as a 1-bit, "
            "greyscale or RGB PNG with the lesion white on black."
        )
    _check_not_inverted(mask, path)
    return mask


def read_grey_png(path: Path | str) -> np.ndarray:
    """Read an image file as uint8 greyscale (H, W); DataError if it cannot be read.

    Args:
        path: the image file.
    """
    path = Path(path)
    return grey_array(open_verified(path), path)


def read_mask_png(path: Path | str) -> np.ndarray:
    """Read a mask file as bool (H, W); DataError if it cannot be read.

    Args:
        path: the mask file.
    """
    path = Path(path)
    return mask_array(open_verified(path), path)


def union_mask(image_path: Path, image_shape: tuple[int, int], mask_paths: list[Path]) -> np.ndarray:
    """Read several mask files and return their union, checking each has the image's size.

    Args:
        image_path: the image the masks belong to (for error messages).
        image_shape: (H, W) of that image.
        mask_paths: one or more mask files.
    """
    union = np.zeros(image_shape, dtype=bool)
    for mask_path in mask_paths:
        mask = read_mask_png(mask_path)
        if mask.shape != tuple(image_shape):
            raise DataError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"{image_path} is {image_shape[1]}x{image_shape[0]}. Replace the mask with "
                "the one that belongs to this image."
            )
        union |= mask
    return union
