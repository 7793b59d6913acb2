"""`python -m image_classification.models [PATTERN]`: list registered models with their metadata."""

from common.cli_errors import ArgumentParser, run_cli

from . import get_model_info, list_models


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("pattern", nargs="?", default="*")
    args = parser.parse_args(argv)
    for name in list_models(args.pattern):
        info = get_model_info(name)
        aliases = ", ".join(info.aliases)
        print(f"{name:28s} {info.input_size:4d}px crop_pct={info.crop_pct:.3f} {info.interpolation:8s} "
              f"aliases: {aliases}")


if __name__ == "__main__":
    run_cli(main)
