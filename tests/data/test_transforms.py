import torch

from dsc.data import VOID
from dsc.data.transforms import RandomScaleCropFlip, pad_collate


def blocky_item(height=60, width=90):
    """Labels in 10-pixel blocks, and an image whose red channel encodes the instance id."""
    rows = torch.arange(height).div(10, rounding_mode="floor")
    cols = torch.arange(width).div(10, rounding_mode="floor")
    instances = (rows[:, None] * 9 + cols[None, :]) % 50 + 1
    image = torch.stack(
        [
            instances / 255.0,
            torch.zeros_like(instances, dtype=torch.float),
            torch.ones_like(instances, dtype=torch.float),
        ]
    )
    return {"image": image.float(), "instances": instances, "classes": instances % 3}


def test_scale_crop_flip_moves_image_and_labels_together():
    torch.manual_seed(0)
    transform = RandomScaleCropFlip(crop_size=48, scale_range=(0.7, 1.6))
    for _ in range(20):
        out = transform(blocky_item())
        assert out["image"].shape == (3, 48, 48) and out["instances"].shape == (48, 48)
        valid = out["instances"] != VOID
        encoded = (out["image"][0] * 255).round().long()
        agree = (encoded[valid] == out["instances"][valid]).float().mean()
        assert agree > 0.8  # bilinear image vs nearest labels differ only along block edges
        assert torch.equal(out["classes"][valid], out["instances"][valid] % 3)


def test_small_images_are_padded_with_void():
    torch.manual_seed(1)
    out = RandomScaleCropFlip(crop_size=64, scale_range=(0.5, 0.5))(blocky_item(40, 40))
    assert (out["instances"] == VOID).float().mean() > 0.9 * (1 - 400 / 64**2)
    assert (out["image"][2] == 0).any()  # padded image pixels are 0


def test_pad_collate_batches_mixed_sizes():
    batch = pad_collate([blocky_item(30, 40), blocky_item(50, 20)])
    assert batch["image"].shape == (2, 3, 50, 40)
    assert (batch["instances"][0, 30:] == VOID).all() and (batch["instances"][1, :, 20:] == VOID).all()
    # image_area marks each image's own pixels, for rounding to leave the padding out.
    assert batch["image_area"].dtype == torch.bool and batch["image_area"].shape == (2, 50, 40)
    assert batch["image_area"][0, :30].all() and not batch["image_area"][0, 30:].any()
    assert batch["image_area"][1, :, :20].all() and not batch["image_area"][1, :, 20:].any()
