"""`rstar-jax info` and `rstar-jax convert`."""

from __future__ import annotations

import json


def _load_any(path: str, dtype: str):
    """A policy or a PPM (any layout of models.hf_ppm) from an HF or orbax folder."""
    from rstar_jax.models.hf_ppm import load_model
    from rstar_jax.models.orbax_io import is_orbax_folder, load_orbax

    return load_orbax(path, dtype) if is_orbax_folder(path) else load_model(path, dtype)


def _info(args) -> int:
    import jax

    from rstar_jax.models import ModelConfig
    from rstar_jax.models.hf_ppm import ppm_layout
    from rstar_jax.models.orbax_io import is_orbax_folder

    config = ModelConfig.from_json_file(f"{args.model}/config.json", dtype=args.dtype)
    orbax = is_orbax_folder(args.model)
    out = {
        "model": args.model,
        "format": "orbax" if orbax else "hf",
        "parameters": config.num_params(),
        "matmul_parameters": config.matmul_params(),
        "config": config.__dict__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
    }
    if args.load:  # also read every tensor: catches a broken checkpoint early
        loaded, params = _load_any(args.model, args.dtype)
        out["loaded_parameters"] = int(sum(x.size for x in jax.tree.leaves(params)))
        # the model as read (a PPM's head may sit in value_head.bin, its LM head be absent) and its PPM
        # layout (models.hf_ppm), or None for a policy
        out.update(parameters=loaded.num_params(), config=loaded.__dict__)
        out["ppm"] = ("ours" if loaded.value_head else None) if orbax else ppm_layout(args.model)
    print(json.dumps(out, indent=2, default=str))
    return 0


def _convert(args) -> int:
    import os
    import shutil

    from rstar_jax.errors import UserError
    from rstar_jax.models import save_hf
    from rstar_jax.models.hf_ppm import save_ppm_hf
    from rstar_jax.models.orbax_io import is_orbax_folder, save_orbax
    from rstar_jax.runs import partial_path, remove_dead_partials, replace_dir

    src, dst = os.path.abspath(args.src), os.path.abspath(args.dst)
    if src == dst or dst.startswith(src + os.sep):
        raise UserError(f"{args.dst}: the destination is (inside) the source folder {args.src}; choose another folder")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise UserError(f"{args.dst} is a file, not a folder; choose a folder for the converted model")
    if os.path.isdir(dst) and os.listdir(dst) and not args.overwrite:
        raise UserError(
            f"{args.dst} is not empty (it holds {', '.join(sorted(os.listdir(dst))[:4])}"
            f"{', ...' if len(os.listdir(dst)) > 4 else ''}); pass --overwrite to replace it whole, "
            "or choose an empty or new folder"
        )
    config, params = _load_any(args.src, args.dtype)
    to = args.to or ("hf" if is_orbax_folder(args.src) else "orbax")
    # written whole next to the destination, then swapped in: never a mix of two models
    hidden = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}")
    remove_dead_partials(hidden)
    tmp = partial_path(hidden)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save = save_orbax if to == "orbax" else save_ppm_hf if config.value_head else save_hf
        save(config, params, tmp)
        if to == "hf":
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.exists(os.path.join(args.src, name)):
                    shutil.copy(os.path.join(args.src, name), os.path.join(tmp, name))
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
        "inferred from the source unless --to is given. A PPM is read in any layout (ours, a transformers "
        "...ForTokenClassification folder, or the official backbone + value_head.bin) and written to HF as "
        "<Family>ForTokenClassification with one label, which AutoModelForTokenClassification loads with its "
        "head. A destination that is not empty is refused unless --overwrite.",
    )
    p.add_argument("src", help="source folder (HF or orbax)")
    p.add_argument("dst", help="destination folder")
    p.add_argument(
        "--to", choices=["hf", "orbax"], help="target format (default: the other one; an HF source to hf re-exports it)"
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a destination folder that is not empty (swapped in whole once the new model is written)",
    )
    p.set_defaults(func=_convert)
