"""Command-line entry point: ``python3 -m training <command> [options]``."""

import argparse
import importlib
import sys

# command name -> module exposing add_arguments(parser) and run(args) -> int | None
COMMANDS = {
    "stretch": (
        "training.model.kps",
        "Stretch a 77-position CLIP checkpoint to 248 positions (KPS).",
    ),
    "train": ("training.train.loop", "Fine-tune with primary component matching (PCM)."),
    "export": (
        "training.export.exporter",
        "Export a checkpoint to the server's ONNX model directory.",
    ),
    "quantize": ("training.export.quantize", "Make an int8 copy of an exported model directory."),
    "synth": (
        "training.synth",
        "Render synthetic long-caption data (ShareGPT4V / Urban1k layout).",
    ),
    "vocab": ("training.model.vocab", "Build a CLIP-style BPE vocabulary from a caption corpus."),
    "demo": ("training.recipe", "Train, export and evaluate the demo model; write the report."),
    "pointing": (
        "training.recipe.pointing",
        "Measure whether dense heat maps point at the object a caption names.",
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        modules[name] = module
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
    args = parser.parse_args(argv)
    return modules[args.command].run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
