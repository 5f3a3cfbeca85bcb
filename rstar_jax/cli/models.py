"""`rstar-jax info` and `rstar-jax convert`."""

from __future__ import annotations

import json


def _load_any(path: str, dtype: str):
    from rstar_jax.models import load_hf
    from rstar_jax.models.orbax_io import is_orbax_folder, load_orbax

    return load_orbax(path, dtype) if is_orbax_folder(path) else load_hf(path, dtype)


def _info(args) -> int:
    import jax

    from rstar_jax.models import ModelConfig
    from rstar_jax.models.orbax_io import is_orbax_folder

    config = ModelConfig.from_json_file(f"{args.model}/config.json", dtype=args.dtype)
    out = {
        "model": args.model,
        "format": "orbax" if is_orbax_folder(args.model) else "hf",
        "parameters": config.num_params(),
        "matmul_parameters": config.matmul_params(),
        "config": config.__dict__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
    }
    if args.load:  # also read every tensor: catches a broken checkpoint early
        _, params = _load_any(args.model, args.dtype)
        out["loaded_parameters"] = int(sum(x.size for x in jax.tree.leaves(params)))
    print(json.dumps(out, indent=2, default=str))
    return 0


def _convert(args) -> int:
    from rstar_jax.models import save_hf
    from rstar_jax.models.orbax_io import is_orbax_folder, save_orbax

    config, params = _load_any(args.src, args.dtype)
    to = args.to or ("hf" if is_orbax_folder(args.src) else "orbax")
    (save_hf if to == "hf" else save_orbax)(config, params, args.dst)
    if to == "hf":
        import os
        import shutil

        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(args.src, name)):
                shutil.copy(os.path.join(args.src, name), os.path.join(args.dst, name))
    print(f"wrote {to} checkpoint to {args.dst} ({config.num_params():,} parameters)")
    return 0


def add_info_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="show a model's size and config and the available devices",
        description="Print a checkpoint's config, parameter count and the JAX devices.",
    )
    p.add_argument("model", help="HF folder (config.json + safetensors) or orbax folder")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--load", action="store_true", help="also load every tensor to validate the checkpoint")
    p.set_defaults(func=_info)


def add_convert_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an HF folder to an orbax checkpoint and back",
        description="Convert between a Hugging Face folder (config.json + safetensors, loadable "
        "by transformers/vLLM) and an orbax checkpoint folder. The direction is "
        "inferred from the source unless --to is given.",
    )
    p.add_argument("src", help="source folder (HF or orbax)")
    p.add_argument("dst", help="destination folder")
    p.add_argument("--to", choices=["hf", "orbax"], help="target format (default: the other one)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=_convert)
