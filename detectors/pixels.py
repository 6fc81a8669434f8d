"""Region statistics read straight from the pixels: colour, texture and silhouette.

A detector trained from scratch on a CPU (a few hundred steps) learns where the products are,
but its box-head vectors keep little of what a shopper searches by: a linear probe read the
pattern of the demo's regions at 0.67 and the product at 0.47 from them (README). These
fixed descriptors carry colour, texture and shape from the first step, as colour
histograms, Gabor filter banks and histograms of oriented gradients described images
before learned features did; the detector appends them to its learned vector, so that a
region is still one 2048-d vector (:class:`~taomm.detectors.detector.ProductDetector`).

Every descriptor is a map per pixel pooled over the region with RoIAlign, so one pass over
the image serves any number of regions (the sampled RoIs in training, the proposals and
then the refined boxes in extraction):

- colour: a soft histogram of 64 RGB bins (4 levels a channel, linear weights between
  levels) in each cell of a 3 x 3 grid over the region, square-rooted (Hellinger);
- texture: the energy of a Gabor filter bank (6 orientations, 4 octaves of wavelength 4 to
  32 pixels), over the region and in each quarter, on a log scale, and its share per filter
  (which orientation and scale dominate: stripes one orientation, checks two, dots all);
- shape: gradient orientations (8 bins, weighted by the gradient's magnitude) on the
  half-resolution image, over the region and in each cell of a 2 x 2 and a 4 x 4 grid,
  each grid normalised over the region;
- silhouette: which of the region's pixels differ from the background around it (the
  median colour of a ring just outside the box, or the colour beside the pixel's row, so
  that a vertical gradient stays background), sampled on a 32 x 32 grid: that mask pooled
  to 8 x 8, its outline as the share of each column (row) left empty from the top and the
  bottom (left, right) at 8 points, the magnitudes of those four outlines' first 12
  Fourier harmonics (a hem of scallops, a fan of pleats, a sleeve: shift-invariant), the
  log aspect ratio and the share the object fills. All of it is taken at the object's
  extent (:func:`object_extent`: the foreground found in the box grown by a quarter a side)
  rather than at the box, which a detector places a tenth of its size off or more;
- details (detectors from the connected extent on): thin lines, dark and bright, at 8
  orientations (a segment of 5 pixels darker or brighter than both its neighbours 1.5
  pixels away across it), their share per orientation and their log-energy in each cell of a 3 x 3 grid
  over the extent: pleats fan out from the waist, a seam or a tier runs across, check lines
  cross, stripes' band edges do not answer (one side only); and the hem: the bottom edge
  of the extent's central 80% sampled in 64 columns against the background just below it,
  its height per column less its best parabola, as the magnitudes of 16 Fourier harmonics
  and its spread (a scalloped or ruffled hem is periodic, a straight or curved one is not).
  The extent is then the foreground *connected* to the box's centre, so that a neighbour
  in the grown window (a product beside it) does not stretch it;
- interior (detectors from it on): the Gabor energies (log and share per filter), the
  colour histogram and the thin lines averaged over the object's *inside* only: the
  silhouette's foreground samples, eroded by two samples so that the outline (an edge
  every product has) and the background between a skirt's hem and the box's corner count
  for nothing; and the share that inside fills. Everything above is read over the box or the
  extent, where the outline and the background weigh as much as the fabric: on the demo's
  stored regions these 130 numbers alone read the pattern at 0.972 against 0.949 for the
  whole 2048-d vector (README).

No weights: the filters are rebuilt from these constants. The detector scales each
statistic to zero mean and unit variance (:class:`Standardiser`), whose running mean and
variance it learns in training and saves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import clip_boxes_to_image, roi_align

COLOUR_LEVELS, COLOUR_GRID = 4, 3
GABOR_WAVELENGTH, GABOR_OCTAVES, ORIENTATIONS = 4.0, 4, 6
SHAPE_BINS, SHAPE_GRIDS = 8, (1, 2, 4)
SILHOUETTE_SAMPLES, SILHOUETTE_GRID, OUTLINE_POINTS, OUTLINE_HARMONICS = 32, 8, 8, 12
EXTENT_MARGIN, EXTENT_SAMPLES = 0.25, 48  # the object's extent is sought in the box grown 25% a side
LINE_ORIENTATIONS, LINE_OFFSET, LINE_LENGTH, LINE_GRID = 8, 1.5, 5, 3  # thin lines: directions,
# the neighbours' distance across and the segment's length along them (px), the grid they are pooled on
HEM_BAND, HEM_INSET, HEM_ROWS, HEM_COLUMNS, HEM_HARMONICS = 0.15, 0.1, 24, 64, 16
INTERIOR_GRID, INTERIOR_ERODE = 16, 5  # the inside is averaged on 16 x 16 samples, eroded by a 5-sample window
_FOREGROUND_DISTANCE, _FOREGROUND_SOFTNESS = 0.1, 0.03  # RGB distance (of [0, 1] channels) from the background
_POOL = 4  # colour maps are averaged over 4 x 4 pixels before the grid samples them
_ENERGY_FLOOR = 1e-3  # log-energies span [floor, 1] -> [0, 1]


def line_bank(orientations: int = LINE_ORIENTATIONS, offset: float = LINE_OFFSET,
              length: int = LINE_LENGTH) -> torch.Tensor:
    """(2 * orientations, 1, k, k): per line direction, the mean of ``length`` pixels along
    the line (1 px apart, bilinear) ``offset`` pixels to one side of it, less the mean along
    the line itself; then the other side. A dark line is where both are positive, a bright
    one where both are negative; a line of another direction leaves the segment and answers
    less (22.5 degrees off: half, measured on a 1-px line)."""
    half = math.ceil(offset + (length - 1) / 2) + 1
    steps = [t - (length - 1) / 2 for t in range(length)]

    def segment(cx: float, cy: float, ux: float, uy: float) -> torch.Tensor:  # mean along (ux, uy) through (cx, cy)
        kernel = torch.zeros(2 * half + 1, 2 * half + 1)
        for t in steps:
            x, y = cx + t * ux, cy + t * uy
            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            for col, row, weight in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                                     (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
                kernel[half + row, half + col] += weight / length
        return kernel

    kernels = []
    for k in range(orientations):
        theta = math.pi * k / orientations  # the line's direction; its neighbours lie across it
        ux, uy = math.cos(theta), math.sin(theta)
        centre = segment(0.0, 0.0, ux, uy)
        for sign in (1, -1):
            kernels.append(segment(-sign * offset * uy, sign * offset * ux, ux, uy) - centre)
    return torch.stack(kernels)[:, None]


def gabor_bank(wavelength: float = GABOR_WAVELENGTH, orientations: int = ORIENTATIONS) -> torch.Tensor:
    """Even (zero-mean cosine) and odd (sine) Gabor filters, (2 * orientations, 1, k, k), each
    with an L1 norm of 1 so that an energy on a [0, 1] image stays below 1; the envelope's
    sigma is 0.56 wavelengths (a bandwidth of one octave)."""
    sigma = 0.56 * wavelength
    half = math.ceil(2 * sigma)
    r = torch.arange(-half, half + 1, dtype=torch.float32)
    y, x = torch.meshgrid(r, r, indexing="ij")
    envelope = torch.exp(-(x * x + y * y) / (2 * sigma * sigma))
    even, odd = [], []
    for k in range(orientations):
        theta = math.pi * k / orientations
        phase = 2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / wavelength
        cos, sin = envelope * torch.cos(phase), envelope * torch.sin(phase)
        cos = cos - cos.mean()
        even.append(cos / cos.abs().sum())
        odd.append(sin / sin.abs().sum())
    return torch.stack(even + odd)[:, None]


class PixelDescriptor(nn.Module):
    """Colour, texture and shape of regions, from the image (see the module's docstring)."""

    def __init__(self, silhouette: bool = True, recentre: bool = True, details: bool = True,
                 interior: bool = True) -> None:
        super().__init__()
        self.silhouette = silhouette  # False: the statistics of detectors saved before it
        self.recentre = recentre  # silhouette at the object's extent; False: at the box (saved before)
        self.details = details and silhouette and recentre  # lines, hem, connected extent; False: saved before
        self.interior = interior and self.details  # texture, colour and lines of the inside; False: saved before
        self.register_buffer("gabor", gabor_bank(), persistent=False)
        self.register_buffer("lines", line_bank(), persistent=False)
        self.register_buffer("levels", torch.linspace(0, 1, COLOUR_LEVELS), persistent=False)

    @property
    def dim(self) -> int:
        colour = COLOUR_LEVELS ** 3 * COLOUR_GRID ** 2
        filters = GABOR_OCTAVES * ORIENTATIONS
        silhouette = SILHOUETTE_GRID ** 2 + 4 * (OUTLINE_POINTS + OUTLINE_HARMONICS) + 2 if self.silhouette else 0
        details = 2 * LINE_GRID ** 2 * (LINE_ORIENTATIONS + 1) + HEM_HARMONICS + 1 if self.details else 0
        interior = 2 * filters + COLOUR_LEVELS ** 3 + 2 * LINE_ORIENTATIONS + 2 if self.interior else 0
        shape = SHAPE_BINS * sum(g * g for g in SHAPE_GRIDS)
        return colour + filters * (1 + 4) + filters + shape + silhouette + details + interior

    def maps(self, images: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        """Per-pixel maps of a batch (B, 3, H, W) in [0, 1], each with the scale RoIAlign maps
        image coordinates by: colour bins, Gabor energies per octave, gradient orientations.
        In float32 under any autocast."""
        with torch.autocast(images.device.type, enabled=False):
            return self._maps(images.float().clamp(0, 1))

    def _maps(self, images: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        weights = (1 - (images[..., None] - self.levels).abs() * (COLOUR_LEVELS - 1)).clamp(min=0)  # (B,3,H,W,L)
        red, green, blue = weights.unbind(1)
        colour = (red[..., :, None, None] * green[..., None, :, None] * blue[..., None, None, :]).flatten(3)
        out = {"colour": (F.avg_pool2d(colour.permute(0, 3, 1, 2), _POOL), 1 / _POOL), "rgb": (images, 1.0)}
        gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
        level = gray
        for octave in range(GABOR_OCTAVES):
            if octave:
                level = F.avg_pool2d(level, 2, ceil_mode=True)
            pad = self.gabor.shape[-1] // 2  # replicated edges: the image's border is no edge
            response = F.conv2d(F.pad(level, (pad,) * 4, mode="replicate"), self.gabor)
            even, odd = response.chunk(2, dim=1)
            out[f"energy{octave}"] = ((even * even + odd * odd).sqrt(), 0.5 ** octave)
        half = F.avg_pool2d(gray, 2, ceil_mode=True)
        gx = F.pad(half[..., :, 2:] - half[..., :, :-2], (1, 1, 0, 0))
        gy = F.pad(half[..., 2:, :] - half[..., :-2, :], (0, 0, 1, 1))
        position = (torch.atan2(gy, gx) % math.pi) * (SHAPE_BINS / math.pi)  # unsigned orientation in bins
        bins = torch.arange(SHAPE_BINS, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
        distance = (position - bins).abs()
        distance = torch.minimum(distance, SHAPE_BINS - distance)
        out["shape"] = ((1 - distance).clamp(min=0) * (gx * gx + gy * gy).sqrt(), 0.5)
        if self.details:
            pad = self.lines.shape[-1] // 2
            across = F.conv2d(F.pad(gray, (pad,) * 4, mode="replicate"), self.lines)  # (B, 2 * orientations, H, W)
            one, other = across[:, 0::2], across[:, 1::2]
            lines = torch.cat([torch.minimum(one, other).clamp(min=0),  # dark lines, then bright
                               torch.minimum(-one, -other).clamp(min=0)], 1)
            out["lines"] = (F.avg_pool2d(lines, _POOL, ceil_mode=True), 1 / _POOL)  # a 1-px line in every mean
        return out

    def forward(self, maps: dict[str, tuple[torch.Tensor, float]], boxes: list[torch.Tensor],
                image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """(N, dim) float32 for the boxes of each image (pixels of the image :meth:`maps` read).
        ``image_sizes``: each image's (height, width) inside a padded batch (default: the
        batch's), so that no background is read from the padding."""
        if sum(len(b) for b in boxes) == 0:  # (the FFT of no rows is an error)
            return maps["colour"][0].new_zeros(0, self.dim)
        with torch.autocast(maps["colour"][0].device.type, enabled=False):
            return self._pool([b.float() for b in boxes], maps, image_sizes)

    def _pool(self, boxes: list[torch.Tensor], maps: dict[str, tuple[torch.Tensor, float]],
              image_sizes: list[tuple[int, int]] | None) -> torch.Tensor:

        def pool(name: str, grid: int, sampling: int) -> torch.Tensor:
            values, scale = maps[name]
            return roi_align(values, boxes, grid, scale, sampling, aligned=True).flatten(1)

        parts = [pool("colour", COLOUR_GRID, 2).clamp(min=0).sqrt()]
        whole = torch.cat([pool(f"energy{o}", 1, 8) for o in range(GABOR_OCTAVES)], 1)
        quarters = torch.cat([pool(f"energy{o}", 2, 4) for o in range(GABOR_OCTAVES)], 1)
        floor = math.log(_ENERGY_FLOOR)
        parts += [((whole.clamp(min=0) + _ENERGY_FLOOR).log() - floor) / -floor,
                  ((quarters.clamp(min=0) + _ENERGY_FLOOR).log() - floor) / -floor,
                  whole / (whole.sum(1, keepdim=True) + 1e-6)]
        for grid in SHAPE_GRIDS:
            shape = pool("shape", grid, 8 // grid).clamp(min=0)
            parts.append((shape / (shape.sum(1, keepdim=True) + 1e-6)).sqrt())
        if self.silhouette:
            images, scale = maps["rgb"]
            sizes = image_sizes or [(images.shape[-2] / scale, images.shape[-1] / scale)] * len(boxes)
            if self.recentre:
                boxes = object_extent(boxes, images, scale, sizes, connected=self.details)
            mask = _foreground(boxes, images, scale, sizes)
            parts.append(_silhouette(boxes, mask))
            if self.details:
                lines, line_scale = maps["lines"]
                energy = roi_align(lines, boxes, LINE_GRID, line_scale, 0, aligned=True)  # (N, 2 * O, g, g), every cell
                energy = energy.clamp(min=0).unflatten(1, (2, LINE_ORIENTATIONS)).flatten(3)  # (N, 2, O, g * g)
                total = energy.sum(2)
                parts += [(energy / (total[:, :, None] + 1e-4)).flatten(1), (total + 1e-3).log().flatten(1),
                          _hem(boxes, images, scale, sizes)]
            if self.interior:
                parts.append(_interior(boxes, mask, maps))
        return torch.cat(parts, 1)


def _grown(boxes: list[torch.Tensor], sizes: list[tuple[float, float]], parts: float) -> list[torch.Tensor]:
    """Each box grown by 1/``parts`` of its width and height a side, clipped to its image."""
    grown = []
    for b, size in zip(boxes, sizes, strict=True):
        margin = (b[:, 2:] - b[:, :2]) / parts
        grown.append(clip_boxes_to_image(torch.cat([b[:, :2] - margin, b[:, 2:] + margin], 1), size))
    return grown


def _foreground(boxes: list[torch.Tensor], images: torch.Tensor, scale: float,
                sizes: list[tuple[float, float]], n: int = SILHOUETTE_SAMPLES) -> torch.Tensor:
    """(N, n, n) in [0, 1]: how far each sample of the box is from the background colour.
    The box grows by one sample a side, clipped to the image; the samples of that ring give
    the background."""
    samples = roi_align(images, _grown(boxes, sizes, n), n + 2, scale, 1, aligned=True)  # (N, 3, n + 2, n + 2)
    inside = samples[..., 1:-1, 1:-1]
    ring = torch.cat([samples[..., 0, :], samples[..., -1, :], samples[..., 1:-1, 0], samples[..., 1:-1, -1]], -1)
    squared = (inside - ring.median(-1).values[..., None, None]).square().sum(1)  # (a channel norm: 20x slower)
    for side in (samples[..., 1:-1, :1], samples[..., 1:-1, -1:]):  # the same row just outside the box
        squared = torch.minimum(squared, (inside - side).square().sum(1))
    return torch.sigmoid((squared.sqrt() - _FOREGROUND_DISTANCE) / _FOREGROUND_SOFTNESS)


def object_extent(boxes: list[torch.Tensor], images: torch.Tensor, scale: float,
                  sizes: list[tuple[float, float]], connected: bool = True) -> list[torch.Tensor]:
    """The extent of the object each box is on: the first and last column and row with a
    foreground sample (:func:`_foreground` > 0.5) in the box grown by EXTENT_MARGIN a side.
    A detected box is off the object by a tenth of its size or more (mean IoU 0.77 in the
    demo) and a silhouette taken relative to it moves with it; the extent does not. A box
    with no foreground in its window keeps itself.

    ``connected``: only the foreground whose columns and rows run on without a gap from
    those of the box's central half (:func:`_seeded_run`, twice each way), so that another
    product inside the grown window is left out (a neighbour stretched the extent by more
    than a tenth of its size for 18% of the demo's skirts and dresses, measured); False:
    every foreground sample (detectors saved before it)."""
    windows = _grown(boxes, sizes, 1 / EXTENT_MARGIN)
    found = _foreground(windows, images, scale, sizes, EXTENT_SAMPLES) > 0.5  # (N, n, n)
    where = torch.arange(EXTENT_SAMPLES, device=found.device, dtype=torch.float32)
    window = torch.cat(windows)
    corner, extent = window[:, :2], window[:, 2:] - window[:, :2]
    columns, rows = found.any(1), found.any(2)
    if connected:
        box = torch.cat(boxes)
        centre, half = (box[:, :2] + box[:, 2:]) / 2, (box[:, 2:] - box[:, :2]) / 4
        sample = corner[:, None, :] + (where[None, :, None] + 0.5) / EXTENT_SAMPLES * extent[:, None, :]  # (N, n, 2)
        seed = (sample - centre[:, None, :]).abs() <= half[:, None, :]  # samples within the box's central half
        rows = torch.ones_like(rows)
        for _ in range(2):
            columns = _seeded_run((found & rows[:, :, None]).sum(1) >= 2, seed[..., 0])
            rows = _seeded_run((found & columns[:, None, :]).sum(2) >= 2, seed[..., 1])
        columns = (found & rows[:, :, None]).any(1) & columns
        alone = columns.any(1)  # else (nothing at the box's centre) every foreground sample
        columns, rows = torch.where(alone[:, None], columns, found.any(1)), torch.where(alone[:, None], rows, found.any(2))

    def span(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (N, n) -> first, end in [0, 1]
        first = torch.where(present, where, EXTENT_SAMPLES).amin(1)
        end = torch.where(present, where + 1, 0).amax(1)
        return first / EXTENT_SAMPLES, end / EXTENT_SAMPLES

    (x0, x1), (y0, y1) = span(columns), span(rows)
    inner = torch.cat([corner + torch.stack([x0, y0], 1) * extent, corner + torch.stack([x1, y1], 1) * extent], 1)
    inner = torch.where(found.flatten(1).any(1, keepdim=True), inner, torch.cat(boxes))
    return list(inner.split([len(b) for b in boxes]))


def _seeded_run(present: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """(N, n) bool: the runs of consecutive ``present`` entries from the first to the last
    that meet ``seed`` (and what lies between them); all False where none meets it."""
    start = present & ~F.pad(present[:, :-1], (1, 0))
    run = torch.cumsum(start, 1) * present  # 1, 2 ... per run, 0 outside
    seeded = torch.where(seed & present, run, 0)
    last = seeded.amax(1, keepdim=True)
    first = torch.where(seeded > 0, seeded, run.shape[1] + 1).amin(1, keepdim=True)
    return present & (run >= first) & (run <= last)


def _hem(boxes: list[torch.Tensor], images: torch.Tensor, scale: float,
         sizes: list[tuple[float, float]]) -> torch.Tensor:
    """(N, HEM_HARMONICS + 1): the bottom edge of each extent's central part (HEM_INSET in
    from each side, the lowest HEM_BAND of its height) on HEM_ROWS x HEM_COLUMNS samples,
    foreground where a sample differs from the background just below the extent (the
    row's median, or the sample below it; the image's last row at its bottom edge); per column the height of the lowest foreground
    run, as a share of the extent's height, less the parabola that fits the edge best
    (a straight, slanted or curved hem leaves nothing); Fourier magnitudes and spread."""
    bands = []
    for b, (image_height, _) in zip(boxes, sizes, strict=True):
        width, height = b[:, 2:3] - b[:, 0:1], b[:, 3:4] - b[:, 1:2]
        below = (b[:, 3:4] + HEM_BAND * height / HEM_ROWS).clamp(max=image_height)  # never the padding
        bands.append(torch.cat([b[:, :1] + HEM_INSET * width, b[:, 3:4] - HEM_BAND * height,
                                b[:, 2:3] - HEM_INSET * width, below], 1))
    samples = roi_align(images, bands, (HEM_ROWS + 1, HEM_COLUMNS), scale, 1, aligned=True)
    inside, below = samples[..., :-1, :], samples[..., -1:, :]  # the last row lies just below the extent
    squared = (inside - below.median(-1).values[..., None]).square().sum(1)
    squared = torch.minimum(squared, (inside - below).square().sum(1))
    mask = torch.sigmoid((squared.sqrt() - _FOREGROUND_DISTANCE) / _FOREGROUND_SOFTNESS)  # (N, rows, columns)
    edge = torch.cumprod(1 - mask.flip(1), 1).mean(1) * HEM_BAND  # (N, columns)
    x = torch.linspace(-1, 1, HEM_COLUMNS, device=edge.device)
    basis = torch.stack([torch.ones_like(x), x, x * x], 1)  # (columns, 3)
    residual = edge - edge @ torch.linalg.pinv(basis).T @ basis.T
    harmonics = torch.fft.rfft(residual, dim=-1).abs()[:, 1:HEM_HARMONICS + 1] / HEM_COLUMNS
    return torch.cat([harmonics, residual.std(1, keepdim=True)], 1)


def _silhouette(boxes: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The silhouette statistics of the module's docstring, (N, 64 + 4 * 20 + 2), from the
    boxes' foreground (:func:`_foreground`, (N, S, S))."""

    def empty_from_start(m: torch.Tensor) -> torch.Tensor:  # share of each column empty from row 0 on
        return torch.cumprod(1 - m, 1).mean(1)

    columns = mask.transpose(1, 2)
    outline = torch.stack([empty_from_start(mask), empty_from_start(mask.flip(1)),
                           empty_from_start(columns), empty_from_start(columns.flip(1))], 1)  # (N, 4, S)
    harmonics = torch.fft.rfft(outline, dim=-1).abs()[..., 1:OUTLINE_HARMONICS + 1] / SILHOUETTE_SAMPLES
    size = torch.cat([b[:, 2:] - b[:, :2] for b in boxes]).clamp(min=1e-3)
    return torch.cat([F.adaptive_avg_pool2d(mask[:, None], SILHOUETTE_GRID).flatten(1),
                      F.adaptive_avg_pool1d(outline, OUTLINE_POINTS).flatten(1), harmonics.flatten(1),
                      (size[:, :1] / size[:, 1:]).log(), mask.mean((1, 2))[:, None]], 1)


def _interior(boxes: list[torch.Tensor], mask: torch.Tensor,
              maps: dict[str, tuple[torch.Tensor, float]]) -> torch.Tensor:
    """(N, 2 * 24 + 64 + 16 + 2): Gabor energies (log, share), colour histogram (square-rooted)
    and thin lines (share, log-energy) averaged over the inside of each box's object: its
    foreground ``mask`` (N, S, S) eroded by INTERIOR_ERODE samples, on INTERIOR_GRID x
    INTERIOR_GRID samples of the box; and the share of the box the inside fills."""
    inside = -F.max_pool2d(-mask[:, None], INTERIOR_ERODE, 1, INTERIOR_ERODE // 2)  # (N, 1, S, S): erosion
    weights = F.adaptive_avg_pool2d(inside, INTERIOR_GRID)  # (N, 1, g, g)
    total = weights.sum((2, 3)) + 1e-3

    def mean(name: str) -> torch.Tensor:  # (N, C): the map averaged over the inside
        values, scale = maps[name]
        return (roi_align(values, boxes, INTERIOR_GRID, scale, 1, aligned=True) * weights).sum((2, 3)) / total

    energy = torch.cat([mean(f"energy{o}") for o in range(GABOR_OCTAVES)], 1).clamp(min=0)
    lines = mean("lines").clamp(min=0)
    line_total = lines.sum(1, keepdim=True)
    return torch.cat([(energy + 1e-4).log(), energy / (energy.sum(1, keepdim=True) + 1e-6),
                      mean("colour").clamp(min=0).sqrt(), lines / (line_total + 1e-4), (line_total + 1e-3).log(),
                      total / INTERIOR_GRID ** 2], 1)


class Standardiser(nn.Module):
    """Each dimension to zero mean and unit variance by running statistics, updated on every
    training batch (an exponential average, the first batch taken whole) and used as they
    are in training and evaluation alike: the pixel statistics differ in scale by orders of
    magnitude (a histogram bin, a log-energy, a gradient share), which slows SGD on the
    layers that read them; batch statistics would make a region depend on the others."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-3) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and len(x) > 1:
            with torch.no_grad():
                weight = self.momentum if int(self.updates) else 1.0
                self.mean.lerp_(x.mean(0), weight)
                self.var.lerp_(x.var(0), weight)
                self.updates += 1
        return (x - self.mean) / (self.var + self.eps).sqrt()


__all__ = ["PixelDescriptor", "Standardiser", "gabor_bank", "line_bank", "object_extent"]
