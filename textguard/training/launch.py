"""Multi-process entry point: `torchrun --nproc_per_node N -m textguard.training.launch --config ...`.

Takes exactly the arguments of `textguard train`. torchrun (or `accelerate launch`) sets RANK and
WORLD_SIZE; the Trainer joins the process group (gloo on CPU, NCCL on GPUs) and rank 0 alone logs
to MLflow and writes the artefact.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    import typer

    from textguard.cli import app
    from textguard.errors import TextguardError

    try:
        app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="textguard.training.launch")
    except TextguardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
