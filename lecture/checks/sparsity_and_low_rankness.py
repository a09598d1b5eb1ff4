"""Checks of the opening section: the image is sparse in the DCT basis and nearly low-rank, the weight matrix is
neither (close to a Gaussian matrix of its shape)."""

from __future__ import annotations

from lecture.render import Rendered
from probes import sparse_low_rank
from results.sparse_low_rank import SparseLowRank

AT = 0.05  # the share kept that the captions quote


def error_curves(rendered: Rendered) -> str:
    """At 5% kept: the image under 0.3 (DCT) and 0.35 (rank); the weight over 0.7 and 0.6, within 0.05 of the
    Gaussian under the DCT and between the image and the Gaussian by rank."""
    result = rendered.result("measured", SparseLowRank)
    dct = {name: result.error("dct", name, AT) for name in result.names}
    svd = {name: result.error("svd", name, AT) for name in result.names}
    sparse_image = dct["image"] < 0.3 and svd["image"] < 0.35
    dense_weight = dct["weight"] > 0.7 and abs(dct["weight"] - dct["gaussian"]) < 0.05
    full_rank_weight = svd["image"] + 0.4 < svd["weight"] < svd["gaussian"]
    named = "; ".join(f"{name} {dct[name]:.2f} and {svd[name]:.2f}" for name in result.names)
    if not (sparse_image and dense_weight and full_rank_weight):
        raise rendered.fail(f"at {AT:.0%} kept (DCT and rank): {named}")
    return f"at {AT:.0%} kept (DCT and rank): {named}"


def reconstructions(rendered: Rendered) -> str:
    """The image rebuilt with errors under 0.3; the weight matrix with errors over 0.7."""
    options = rendered.settings["options"]
    image, weight = sparse_low_rank.reconstructions(
        rendered.result("measured", SparseLowRank), options["keep"] / 100, options["rank"] / 100
    )
    summary = (
        f"image {image.dct_error:.2f} (DCT) and {image.svd_error:.2f} (rank {image.rank}); "
        f"weight {weight.dct_error:.2f} and {weight.svd_error:.2f} (rank {weight.rank})"
    )
    if max(image.dct_error, image.svd_error) >= 0.3 or min(weight.dct_error, weight.svd_error) <= 0.7:
        raise rendered.fail(summary)
    return summary


CHECKS = {
    "sparse_low_rank_errors": error_curves,
    "sparse_low_rank_images": reconstructions,
}
