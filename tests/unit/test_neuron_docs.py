"""What docs/inferentia.md and docker/Dockerfile.neuron must say about Neuron as of release 2.34 (issue 21), and that
they never present a step as run on hardware."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/inferentia.md").read_text()
DOCKERFILE = (ROOT / "docker/Dockerfile.neuron").read_text()


def test_the_doc_names_the_release_the_native_backends_instances_the_container_stop_and_issue_1265():
    assert "Neuron 2.34" in DOC and "2026-11-30" in DOC
    assert "Trn2 and Trn3 only" in DOC and "`compile=neuron_native` (**Trn2/Trn3 only**)" in DOC
    assert "none has been published since Neuron 2.32 (2026-08-17)" in DOC
    assert "aws-neuron-sdk issue #1265" in DOC and "torch-neuronx 2.8" in DOC


def test_the_family_table_has_a_row_per_stack_with_release_and_date():
    rows = [line for line in DOC.splitlines() if line.startswith("| **")]
    families = [re.match(r"\| \*\*(.+?)\*\*", row).group(1) for row in rows]
    assert families == ["Inf1", "Inf2, Trn1/Trn1n", "Trn2, Trn3"]
    for row in rows:
        assert re.search(r"Neuron 2\.\d+[ ,(notes]*\d{4}-\d{2}-\d{2}", row), row


def test_every_walk_through_step_says_where_it_ran():
    steps = [line for line in DOC.splitlines() if line.startswith("### ")]
    assert len(steps) >= 12  # the Inf2 walk-through and the Trn2 one
    for step in steps:
        assert "not run on hardware" in step or "(anywhere)" in step, step


def test_the_dockerfile_states_the_dlc_stop_and_offers_the_ubuntu_base_marked_not_run():
    assert "stop at Neuron 2.31" in DOCKERFILE and "since Neuron 2.32 (2026-08-17)" in DOCKERFILE
    assert (
        "FROM ${UBUNTU_IMAGE} AS base-ubuntu" in DOCKERFILE and "https://pip.repos.neuron.amazonaws.com" in DOCKERFILE
    )
    assert (
        '"torch-neuronx==${TORCH_NEURONX_VERSION}"' in DOCKERFILE and "ARG TORCH_NEURONX_VERSION=2.9.0.*" in DOCKERFILE
    )
    stages = [line for line in DOCKERFILE.splitlines() if line.startswith("# ---- ")]
    assert len(stages) == 5 and all("not run" in line for line in stages)
