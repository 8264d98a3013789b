"""Multi-process training and sharded generation under torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ctsgan.training.distributed import shard
from training_helpers import assert_ddp_consistent, tiny_config


@pytest.mark.parametrize("world", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 10, 11])
def test_shard_covers_every_index_once(n: int, world: int) -> None:
    parts = [list(shard(n, r, world)) for r in range(world)]
    assert sorted(sum(parts, [])) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match="bad rank"):
        shard(4, 2, 2)


@pytest.mark.slow
def test_two_cpu_processes_keep_equal_weights_and_shard_generation(
    make_tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    """With LeCam on: its anchors (discriminator buffers) are averaged across ranks like BatchNorm's."""
    assert_ddp_consistent("ctsgan", tiny_config("ctsgan", lecam_weight=0.3), make_tiny_dataset(), tmp_path, steps=3,
                          n_volumes=5)
