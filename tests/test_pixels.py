"""Pixel statistics of regions (colour, texture, shape) and the detector that appends them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.pixels import (
    COLOUR_GRID,
    COLOUR_LEVELS,
    GABOR_OCTAVES,
    HEM_HARMONICS,
    LINE_GRID,
    LINE_ORIENTATIONS,
    ORIENTATIONS,
    OUTLINE_HARMONICS,
    OUTLINE_POINTS,
    SILHOUETTE_GRID,
    PixelDescriptor,
    Standardiser,
    gabor_bank,
    line_bank,
    object_extent,
)
from taomm.errors import TaommError
from taomm.taxonomy import load_taxonomy

CLASSES = list(load_taxonomy("taobao33").classes)
COLOUR = COLOUR_LEVELS ** 3 * COLOUR_GRID ** 2
FILTERS = GABOR_OCTAVES * ORIENTATIONS
SHARE = slice(COLOUR + 5 * FILTERS, COLOUR + 6 * FILTERS)  # each filter's share of the energy
SILHOUETTE = SILHOUETTE_GRID ** 2 + 4 * (OUTLINE_POINTS + OUTLINE_HARMONICS) + 2
DETAILS = 2 * LINE_GRID ** 2 * (LINE_ORIENTATIONS + 1) + HEM_HARMONICS + 1
INTERIOR = 2 * FILTERS + COLOUR_LEVELS ** 3 + 2 * LINE_ORIENTATIONS + 2  # the vector's tail
LINES = slice(-INTERIOR - DETAILS, -INTERIOR - DETAILS + 2 * LINE_GRID ** 2 * LINE_ORIENTATIONS)  # shares:
# (dark, bright) x orientation x cell
HEM = slice(-INTERIOR - HEM_HARMONICS - 1, -INTERIOR)
INSIDE_SHARE = slice(-INTERIOR + FILTERS, -INTERIOR + 2 * FILTERS)  # each filter's share inside the object
INSIDE_COLOUR = slice(-INTERIOR + 2 * FILTERS, -INTERIOR + 2 * FILTERS + COLOUR_LEVELS ** 3)


def silhouette_part(features: torch.Tensor, details: bool = True) -> torch.Tensor:
    """The silhouette statistics (the line, hem and interior statistics follow them where ``details``)."""
    tail = DETAILS + INTERIOR
    return features[..., -SILHOUETTE - tail:-tail] if details else features[..., -SILHOUETTE:]


def describe(image: torch.Tensor, boxes: list[list[float]], recentre: bool = True) -> torch.Tensor:
    pixels = PixelDescriptor(recentre=recentre)
    return pixels(pixels.maps(image[None]), [torch.tensor(boxes)])


def stripes(vertical: bool, period: int = 8, size: int = 96) -> torch.Tensor:
    line = (torch.arange(size) // (period // 2)) % 2
    grid = line.view(1, -1).expand(size, size) if vertical else line.view(-1, 1).expand(size, size)
    return grid.float().expand(3, size, size).clone()


def test_gabor_bank_is_zero_mean_and_unit_l1() -> None:
    bank = gabor_bank(4.0, 4)
    assert bank.shape[:2] == (8, 1) and bank.shape[-1] % 2 == 1
    assert torch.allclose(bank.sum((1, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(bank.abs().sum((1, 2, 3)), torch.ones(8), atol=1e-5)


def test_dimensions_and_no_weights() -> None:
    pixels = PixelDescriptor()
    out = describe(torch.rand(3, 80, 120), [[0, 0, 60, 40], [10, 10, 110, 70]])
    assert out.shape == (2, pixels.dim) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert pixels.state_dict() == {}  # rebuilt from constants: nothing to save
    assert describe(torch.rand(3, 80, 120), torch.zeros(0, 4).tolist()).shape == (0, pixels.dim)  # no regions


def test_colour_histogram_finds_the_colour_where_it_is() -> None:
    image = torch.ones(3, 90, 90)  # white, a red square in the top-left ninth of the box
    image[:, :30, :30] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    colour = describe(image, [[0, 0, 90, 90]])[0, :COLOUR].view(COLOUR_LEVELS ** 3, COLOUR_GRID ** 2)
    red, white = (COLOUR_LEVELS - 1) * COLOUR_LEVELS ** 2, COLOUR_LEVELS ** 3 - 1
    assert colour[red, 0] == pytest.approx(1.0, abs=0.05)  # the first cell is red
    assert colour[white, 1:].min() == pytest.approx(1.0, abs=0.05)  # the others white
    assert colour[red, 1:].max() < 0.05


def test_texture_tells_stripes_by_orientation_and_plain_by_no_energy() -> None:
    box = [[8.0, 8.0, 88.0, 88.0]]
    vertical, horizontal = describe(stripes(True), box)[0], describe(stripes(False), box)[0]
    plain = describe(torch.full((3, 96, 96), 0.4), box)[0]
    # shares per orientation over the octaves: the first varies along x (vertical stripes), the middle one along y
    v, h = (x[SHARE].view(GABOR_OCTAVES, ORIENTATIONS).sum(0) for x in (vertical, horizontal))
    across = ORIENTATIONS // 2
    assert v[0] > 0.5 and v[0] > 10 * v[across]
    assert h[across] > 0.5 and h[across] > 10 * h[0]
    log_energy = slice(COLOUR, COLOUR + FILTERS)
    assert plain[log_energy].max() < 0.01 < vertical[log_energy].max()


def graded_background(size: int = 120) -> torch.Tensor:
    """A studio background: light grey at the top, darker at the bottom (as the demo's)."""
    return torch.linspace(0.92, 0.7, size).view(1, -1, 1).expand(3, size, size).clone()


def silhouette(image: torch.Tensor, box: list[float], recentre: bool = True) -> dict[str, torch.Tensor]:
    tail = silhouette_part(describe(image, [box], recentre)[0], details=recentre)
    mask, rest = tail[:SILHOUETTE_GRID ** 2], tail[SILHOUETTE_GRID ** 2:]
    harmonics = rest[4 * OUTLINE_POINTS:4 * (OUTLINE_POINTS + OUTLINE_HARMONICS)]
    return {"mask": mask.view(SILHOUETTE_GRID, SILHOUETTE_GRID), "harmonics": harmonics.view(4, OUTLINE_HARMONICS),
            "aspect": rest[-2], "fill": rest[-1]}


def test_silhouette_is_the_object_against_a_graded_background() -> None:
    image = graded_background()
    rows, cols = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    # An A-line shape: narrow at the top (row 20), full width at the bottom (row 100).
    half_width = 8 + (rows - 20) / 80 * 32
    inside = (rows >= 20) & (rows < 100) & ((cols - 60).abs() < half_width)
    image[:, inside] = torch.tensor([0.75, 0.2, 0.2]).view(3, 1)
    shape = silhouette(image, [20, 20, 100, 100], recentre=False)  # the mask at the box itself
    assert shape["fill"] == pytest.approx(inside.float().sum().item() / 80 ** 2, abs=0.08)
    assert shape["mask"][0, 0] < 0.1 and shape["mask"][0, -1] < 0.1  # the shoulders are empty
    assert shape["mask"][-1, 0] > 0.7 and shape["mask"][-1, -1] > 0.7 and shape["mask"][4, 4] > 0.9
    assert shape["aspect"] == pytest.approx(0.0, abs=1e-5)
    assert silhouette(graded_background(), [10, 10, 110, 60])["fill"] < 0.05  # no object: background only
    assert silhouette(image, [20, 20, 100, 60], recentre=False)["aspect"] == pytest.approx(math.log(2.0), abs=1e-5)


def a_line_dress(shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """An A-line shape on a graded background, its bounding box [30, 24, 90, 104] (+ shift)."""
    image = graded_background()
    rows, cols = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    rows, cols = rows - shift[1], cols - shift[0]
    inside = (rows >= 24) & (rows < 104) & ((cols - 60).abs() < 10 + (rows - 24) / 80 * 20)
    image[:, inside] = torch.tensor([0.3, 0.5, 0.2]).view(3, 1)
    return image


def test_object_extent_finds_the_object_around_a_misplaced_box() -> None:
    image = a_line_dress()
    boxes = torch.tensor([[36.0, 14, 96, 96],  # off by 10 px / 12% of its size
                          [22.0, 30, 84, 110],
                          [30.0, 24, 90, 104],  # on the object
                          [0.0, 0, 12, 12]])  # background only: kept as it is
    found = object_extent([boxes], image[None], 1.0, [(120, 120)])[0]
    window = (boxes[:, 2:] - boxes[:, :2]) * 1.5 / 48  # one sample of the searched window
    for box, step in zip(found[:3], window[:3], strict=True):
        assert (box - torch.tensor([30.0, 24, 90, 104])).abs().max() <= 1.5 * step.max()
    assert torch.equal(found[3], boxes[3])


def test_a_neighbour_does_not_stretch_the_connected_extent() -> None:
    image = a_line_dress()
    image[:, 60:100, 97:105] = torch.tensor([0.6, 0.1, 0.5]).view(3, 1, 1)  # a product beside it, 7 px away
    box = [torch.tensor([[34.0, 20, 94, 100]])]
    connected = object_extent(box, image[None], 1.0, [(120, 120)])[0][0]
    every = object_extent(box, image[None], 1.0, [(120, 120)], connected=False)[0][0]
    assert (connected - torch.tensor([30.0, 24, 90, 104])).abs().max() <= 3.0
    assert every[2] > 100  # every foreground sample: the neighbour's too
    nothing_at_the_centre = [torch.tensor([[92.0, 56, 110, 104]])]  # the box's centre is in the gap
    assert torch.isfinite(object_extent(nothing_at_the_centre, image[None], 1.0, [(120, 120)])[0]).all()


def test_line_kernels_compare_two_neighbours_with_the_centre() -> None:
    bank = line_bank(8, 1.5)
    assert bank.shape[:2] == (16, 1)
    assert torch.allclose(bank.sum((1, 2, 3)), torch.zeros(16), atol=1e-6)  # neighbour (weights 1) less centre
    assert torch.allclose(bank[0::2] + bank[1::2], bank[1::2].flip(-1, -2) + bank[0::2].flip(-1, -2), atol=1e-6)


def lines_of(image: torch.Tensor, box: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares per orientation of the dark lines, summed over the cells (8,), and their log-energies per cell."""
    features = describe(image, [box])[0]
    shares = features[LINES].view(2, LINE_ORIENTATIONS, LINE_GRID ** 2)
    energy = features[LINES.stop:LINES.stop + 2 * LINE_GRID ** 2].view(2, LINE_GRID ** 2)
    return shares[0].sum(1), energy[0]


def test_thin_lines_are_found_with_their_orientation() -> None:
    rows, cols = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    box = [24.0, 24, 96, 96]
    plain = torch.full((3, 120, 120), 0.92)
    plain[:, 24:96, 24:96] = torch.tensor([0.8, 0.5, 0.3]).view(3, 1, 1)
    found = {}
    for name, line in {"vertical": (cols % 12 == 0), "horizontal": (rows % 12 == 0),
                       "diagonal": ((rows - cols) % 12 == 0)}.items():
        image = plain.clone()
        image[:, line & (rows > 30) & (rows < 90) & (cols > 30) & (cols < 90)] = 0.2  # 1-px dark lines
        found[name] = lines_of(image, box)
    # the line's direction: 0 = along x, 4 = along y (pi/2), 2 = the diagonal y = x (image rows down)
    assert found["horizontal"][0].argmax() == 0 and found["vertical"][0].argmax() == 4
    assert found["diagonal"][0].argmax() == 2
    bands = plain.clone()
    bands[:, 30:90, 30:90][:, :, (torch.arange(60) // 6) % 2 == 1] = 0.2  # stripes 6 px wide: edges, not lines
    centre = LINE_GRID ** 2 // 2
    assert found["vertical"][1][centre] > lines_of(bands, box)[1][centre] + 2.0  # e^2: 7x the energy
    assert found["vertical"][1][centre] > lines_of(plain, box)[1][centre] + 2.0


def hem_of(edge: torch.Tensor) -> torch.Tensor:
    """The hem statistics of a shape whose bottom edge is at row ``edge[col]`` (columns 16-103)."""
    rows, cols = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    image = graded_background()
    inside = (rows >= 16) & (cols >= 16) & (cols < 104) & (rows < edge[cols.long()])
    image[:, inside] = torch.tensor([0.2, 0.3, 0.7]).view(3, 1)
    return describe(image, [[16.0, 16, 104, 100]])[0, HEM]


def test_the_hem_sees_scallops_and_not_a_curved_or_slanted_hem() -> None:
    x = (torch.arange(120.0) - 16) / 88  # 0 to 1 across the shape
    flat, slanted, curved = torch.full((120,), 92.0), 88 + 8 * x, 96 - 16 * (x - 0.5).square()
    scalloped = 88 + 8 * torch.sin(math.pi * x * 7).abs()  # seven scallops across the width
    hems = {name: hem_of(edge) for name, edge in
            {"flat": flat, "slanted": slanted, "curved": curved, "scalloped": scalloped}.items()}
    # the central 80% of the width holds 5.6 scallops: the 6th harmonic (index 5)
    assert hems["scalloped"][:-1].argmax() == 5 and hems["scalloped"][5] > 0.005
    for name in ("flat", "slanted", "curved"):
        assert hems[name][:-1].max() < hems["scalloped"][5] / 5, name
        assert hems[name][-1] < hems["scalloped"][-1] / 5, name  # spread


def test_recentred_silhouette_does_not_move_with_the_box() -> None:
    image, exact = a_line_dress(), [30.0, 24, 90, 104]
    elsewhere = a_line_dress((-12.0, 6.0))  # the same dress elsewhere in the photo, at [18, 30, 78, 110]
    for recentre in (False, True):
        on_the_object = silhouette(image, exact, recentre)["mask"]
        off = [silhouette(image, [37.0, 16, 97, 96], recentre)["mask"],  # 7 and 8 px off
               silhouette(elsewhere, [25.0, 22, 85, 102], recentre)["mask"]]
        moved = max(float((mask - on_the_object).abs().mean()) for mask in off)
        # a sample of the searched window (2.5 px) is the extent's resolution
        assert moved < 0.06 if recentre else moved > 0.25


def test_outline_harmonics_see_a_scalloped_hem() -> None:
    rows, cols = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    body = (rows >= 16) & (rows < 90) & (cols >= 16) & (cols < 104)
    scallops = (rows >= 16) & (cols >= 16) & (cols < 104) & (rows < 90 + 8 * torch.sin(math.pi * (cols - 16) / 88 * 7).abs())
    hems = {}
    for name, inside in {"flat": body, "scalloped": scallops}.items():
        image = graded_background()
        image[:, inside] = torch.tensor([0.2, 0.3, 0.7]).view(3, 1)
        hems[name] = silhouette(image, [16, 16, 104, 98])["harmonics"]
    bottom, top = 1, 0  # outline order: from the top and from the bottom (per column), left, right (per row)
    # Seven scallops across the width: |sin| has period 1/7 of it, so its 7th harmonic.
    assert hems["scalloped"][bottom, 6] > 4 * hems["flat"][bottom, 6] and hems["scalloped"][bottom, 6] > 0.01
    assert hems["scalloped"][top].sum() < 0.01 and hems["flat"][top].sum() < 0.01  # both tops are straight


def test_silhouette_reads_no_background_from_a_padded_batch() -> None:
    image = graded_background(96)[:, :, :80].clone()  # 96 high, 80 wide
    image[:, 30:90, 50:80] = torch.tensor([0.8, 0.3, 0.1]).view(3, 1, 1)  # an object against the right edge
    padded = torch.zeros(1, 3, 96, 112)  # a batch padded to a wider image, as torchvision pads
    padded[0, :, :, :80] = image
    pixels, box = PixelDescriptor(), [torch.tensor([[40.0, 20, 80, 94]])]
    alone = silhouette_part(pixels(pixels.maps(image[None]), box))
    in_batch = silhouette_part(pixels(pixels.maps(padded), box, image_sizes=[(96, 80)]))
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert not torch.allclose(alone, silhouette_part(pixels(pixels.maps(padded), box)), atol=1e-3)  # the padding read


def test_a_region_does_not_depend_on_the_others_or_the_batch() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g)
    pixels = PixelDescriptor()
    both = pixels(pixels.maps(images), [torch.tensor([[0.0, 0, 30, 40]]), torch.tensor([[5.0, 5, 60, 60], [0, 0, 64, 64]])])
    alone = pixels(pixels.maps(images[1:]), [torch.tensor([[0.0, 0, 64, 64]])])
    assert torch.allclose(both[2], alone[0], atol=1e-6)


def test_bf16_autocast_keeps_the_statistics_in_float32() -> None:
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = describe(image, [[0, 0, 50, 50]])
    assert out.dtype == torch.float32
    assert torch.allclose(out, describe(image, [[0, 0, 50, 50]]), atol=1e-6)


def test_standardiser_learns_running_statistics_in_training_only() -> None:
    g = torch.Generator().manual_seed(5)
    scale = Standardiser(3)
    batch = torch.randn(500, 3, generator=g) * torch.tensor([0.01, 1.0, 30.0]) + torch.tensor([5.0, -1.0, 0.0])
    out = scale.train()(batch)  # the first batch sets the statistics
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-3)
    assert torch.allclose(out.std(0), torch.tensor([0.3, 1.0, 1.0]), atol=0.05)  # eps floors the tiny variance
    before = scale.mean.clone()
    scale(batch[:1])  # one row has no variance: no update
    scale.eval()(batch + 100)
    assert torch.equal(scale.mean, before) and int(scale.updates) == 1
    scale.train()(batch + 10)
    assert torch.allclose(scale.mean, before + 1.0, atol=1e-4)  # an exponential average, momentum 0.1
    one, many = scale.eval()(batch[:1]), scale(batch)
    assert torch.equal(one[0], many[0])  # a row does not depend on the others


@pytest.fixture(scope="module")
def detector() -> ProductDetector:
    torch.manual_seed(0)
    config = DetectorConfig(classes=CLASSES, attributes={"colour": ["红", "蓝"]}, pixel_features=True, fpn_channels=64)
    return ProductDetector(config).eval()


def test_region_vector_ends_with_the_pixel_statistics(detector: ProductDetector) -> None:
    image = torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(2))  # the detector's own size: no resize
    (regions,) = detector.extract([image], min_score=0.0)
    dim = detector.pixels.dim
    assert regions["features"].shape[1] == 2048
    assert detector.rcnn.roi_heads.box_head.fc7.out_features == 2048 - dim
    boxes = torch.tensor([[0.0, 0.0, 160.0, 128.0], [20.0, 30.0, 90.0, 120.0]])
    (at_boxes,) = detector.features_at([image], [boxes])
    expected = detector.pixel_scale(describe(image, boxes.tolist()))
    assert torch.allclose(at_boxes[:, -dim:], expected, atol=1e-4)


def test_detect_is_torchvision_post_processing() -> None:
    torch.manual_seed(0)
    plain = ProductDetector(DetectorConfig(classes=CLASSES, fpn_channels=64)).eval()
    images = [torch.rand(3, 120, 200, generator=torch.Generator().manual_seed(3))]
    ours, theirs = plain.detect(images)[0], plain.rcnn(images)[0]
    assert torch.allclose(ours["boxes"], theirs["boxes"], atol=1e-4)
    assert torch.equal(ours["labels"], theirs["labels"] - 1)


def test_training_losses_and_round_trip(detector: ProductDetector, tmp_path: Path) -> None:
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(4))
    target = {"boxes": torch.tensor([[10.0, 20.0, 90.0, 110.0]]), "labels": torch.tensor([5]),
              "attributes": torch.tensor([[0.0, 1.0]])}
    detector.train()
    try:
        losses = detector.losses([image], [target])
    finally:
        detector.eval()
    assert set(losses) >= {"loss_classifier", "loss_attributes"} and all(math.isfinite(v.item()) for v in losses.values())
    detector.save(tmp_path / "det")
    loaded = ProductDetector.load(tmp_path / "det").eval()
    assert loaded.config.pixel_features
    a, b = detector.extract([image], min_score=0.0), loaded.extract([image], min_score=0.0)
    assert torch.equal(a[0]["features"], b[0]["features"])


def saved_before(tmp_path: Path, key: str, **settings: bool) -> tuple[ProductDetector, ProductDetector]:
    """A detector with ``settings`` saved as it was before ``key`` existed (the key left out
    of its detector.json), and that detector loaded back; both in eval mode."""
    torch.manual_seed(0)
    old = ProductDetector(DetectorConfig(classes=CLASSES, fpn_channels=64, **settings))
    old.save(tmp_path)
    config = json.loads((tmp_path / "detector.json").read_text("utf-8"))
    del config[key]  # the key did not exist then
    (tmp_path / "detector.json").write_text(json.dumps(config), "utf-8")
    return old.eval(), ProductDetector.load(tmp_path).eval()


def test_a_detector_saved_before_pixel_features_loads_as_it_was(tmp_path: Path) -> None:
    _, loaded = saved_before(tmp_path, "pixel_features")
    assert loaded.pixels is None and loaded.rcnn.roi_heads.box_head.fc7.out_features == 2048


def test_a_detector_saved_before_the_silhouette_loads_as_it_was(tmp_path: Path) -> None:
    old, loaded = saved_before(tmp_path, "pixel_silhouette", pixel_features=True, pixel_silhouette=False)
    assert old.pixels.dim == PixelDescriptor().dim - SILHOUETTE - DETAILS - INTERIOR
    assert not loaded.config.pixel_silhouette and loaded.pixels.dim == old.pixels.dim
    image = torch.rand(3, 64, 64)
    assert torch.equal(old.features_at([image], [torch.tensor([[4.0, 4, 40, 50]])])[0],
                       loaded.features_at([image], [torch.tensor([[4.0, 4, 40, 50]])])[0])


def test_a_detector_saved_before_the_object_extent_loads_as_it_was(tmp_path: Path) -> None:
    old, loaded = saved_before(tmp_path, "pixel_recentre", pixel_features=True, pixel_recentre=False)
    assert loaded.config.pixel_silhouette and not loaded.config.pixel_recentre
    image, box = a_line_dress(), [torch.tensor([[36.0, 14, 96, 96]])]
    assert torch.equal(old.features_at([image], box)[0], loaded.features_at([image], box)[0])
    loaded.config.pixel_recentre = loaded.pixels.recentre = True
    assert not torch.equal(old.features_at([image], box)[0], loaded.features_at([image], box)[0])


def test_a_detector_saved_before_the_line_and_hem_statistics_loads_as_it_was(tmp_path: Path) -> None:
    old, loaded = saved_before(tmp_path, "pixel_details", pixel_features=True, pixel_details=False)
    assert old.pixels.dim == PixelDescriptor().dim - DETAILS - INTERIOR
    assert loaded.config.pixel_recentre and not loaded.config.pixel_details
    image, box = a_line_dress(), [torch.tensor([[36.0, 14, 96, 96]])]
    assert torch.equal(old.features_at([image], box)[0], loaded.features_at([image], box)[0])


def an_object(striped: bool, colour: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> torch.Tensor:
    """A 40 x 56 rectangle of ``colour`` (with dark horizontal stripes of period 8 when
    ``striped``) at [40, 32, 80, 88] on a light background."""
    image = torch.full((3, 120, 120), 0.92)
    image[:, 32:88, 40:80] = torch.tensor(colour).view(3, 1, 1)
    if striped:
        for top in range(32, 88, 8):
            image[:, top:top + 3, 40:80] = 0.1
    return image


def test_the_inside_reads_the_fabric_not_the_background() -> None:
    box = [[28.0, 20, 92, 100]]  # a generous box: more than a third of it is background
    plain, striped = describe(an_object(False), box)[0], describe(an_object(True), box)[0]
    energy = slice(-INTERIOR, -INTERIOR + FILTERS)  # log-energies inside, octave-major
    across = 1 * ORIENTATIONS + ORIENTATIONS // 2  # wavelength 8, waves running down: horizontal stripes
    assert striped[energy][across] - plain[energy][across] > 1.5
    assert striped[INSIDE_SHARE][across] > 3 * plain[INSIDE_SHARE][across]
    # colour: the box's commonest bin is the light background; inside, red alone
    white = COLOUR_LEVELS ** 3 - 1
    in_box = plain[:COLOUR].square().view(COLOUR_LEVELS ** 3, COLOUR_GRID ** 2).sum(1)
    inside = plain[INSIDE_COLOUR].square()
    assert in_box.argmax() == white and in_box[white] / in_box.sum() > 0.2 and inside[white] / inside.sum() < 0.02
    red, green, blue = (int(v) for v in torch.unravel_index(inside.argmax(), (COLOUR_LEVELS,) * 3))
    assert red >= 2 and green == blue == 0


def test_a_detector_saved_before_the_interior_statistics_loads_as_it_was(tmp_path: Path) -> None:
    old, loaded = saved_before(tmp_path, "pixel_interior", pixel_features=True, pixel_interior=False)
    assert old.pixels.dim == PixelDescriptor().dim - INTERIOR
    assert loaded.config.pixel_details and not loaded.config.pixel_interior
    image, box = an_object(True), [torch.tensor([[28.0, 20, 92, 100]])]
    assert torch.equal(old.features_at([image], box)[0], loaded.features_at([image], box)[0])


def test_weights_of_another_shape_are_a_clear_error(tmp_path: Path) -> None:
    ProductDetector(DetectorConfig(classes=CLASSES, pixel_features=True, fpn_channels=64)).save(tmp_path)
    config = json.loads((tmp_path / "detector.json").read_text("utf-8"))
    config["pixel_silhouette"] = False  # a config that no longer describes the weights
    (tmp_path / "detector.json").write_text(json.dumps(config), "utf-8")
    with pytest.raises(TaommError, match="another shape"):
        ProductDetector.load(tmp_path)
