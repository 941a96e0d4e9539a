"""The training loop: DiceCE on random patches, AdamW with warm-up + cosine, AMP on CUDA,
optional weight averaging over the final epochs, validation through the core, atomic best/last
checkpoints, exact resume, DDP under torchrun.

``train(TrainOptions(...))`` is what ``lunglivseg train`` calls (the Slicer module runs that
command in a child process); Python callers and the tests call it directly, with an event
callback and a cancel token.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.bundle.weights import load_network
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.files import write_text_atomic
from LungLiverSegLib.progress import CancelToken
from LungLiverSegLib.segmentation.segment import resolve_device
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from LungLiverSegTraining import checkpoint as ckpt
from LungLiverSegTraining.averaging import WeightAverage
from LungLiverSegTraining.bundle_export import Provenance, export_bundle, hardware_description
from LungLiverSegTraining.config import TrainingConfig, config_from_json, config_to_json
from LungLiverSegTraining.dataset_reader import (
    Dataset,
    Split,
    label_lookup,
    load_case,
    make_split,
    open_dataset,
    split_from_json,
)
from LungLiverSegTraining.distributed import (
    DistributedContext,
    barrier,
    init_distributed,
    rank_device,
    shutdown,
    sum_across_ranks,
)
from LungLiverSegTraining.errors import TrainingConfigError
from LungLiverSegTraining.patches import (
    PatchDataset,
    augmentation,
    concatenate_samples,
    histogram_range,
    prepare_case,
)
from LungLiverSegTraining.progress_report import EventCallback, Reporter, write_curves
from LungLiverSegTraining.schedule import warmup_cosine
from LungLiverSegTraining.validation import ValidationCase, validate, validation_cases

SPLIT_FILE = "split.json"
CURVES_FILE = "curves.png"


@dataclass
class TrainOptions:
    """One training job in this process: a ``TrainRequest`` (the ``train`` command) with its config
    loaded, plus what no command line carries (an event callback, a cancel token). ``config`` may
    be None only with ``resume`` (the run's own is reused); ``progress`` defaults to ``none`` here,
    as a Python caller shows progress itself."""

    dataset: Path
    out: Path
    config: TrainingConfig | None = None
    resume: bool = False
    init_from: Path | None = None
    device: str = "auto"
    epochs: int | None = None
    seed: int | None = None
    progress: str = "none"
    callback: EventCallback | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    command: str = "LungLiverSegTraining.trainer.train (Python)"

    @classmethod
    def from_request(
        cls, request: TrainRequest, config: TrainingConfig | None, cancel: CancelToken
    ) -> TrainOptions:
        """The job of a ``train`` command; its provenance is the command as it could be re-typed."""
        return cls(
            dataset=request.dataset,
            out=request.out,
            config=config,
            resume=request.resume,
            init_from=request.init_from,
            device=request.device,
            epochs=request.epochs,
            seed=request.seed,
            progress=request.progress,
            cancel=cancel,
            command=shlex.join(["lunglivseg", "train", *request.to_argv()]),
        )


@dataclass
class TrainResult:
    bundle_folder: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_mean_dice: float
    training_time_s: float


@dataclass
class Run:
    """One training run, kept together as nnU-Net's trainer keeps it on ``self``: where it runs
    (config, device, DDP context, reporter), the network and what optimises it, and everything
    that evolves during training (what a checkpoint holds)."""

    config: TrainingConfig
    device: torch.device
    context: DistributedContext
    reporter: Reporter
    network: torch.nn.Module
    steps_per_epoch: InitVar[int]
    model: torch.nn.Module = field(init=False)
    """``network``, wrapped in DDP when distributed."""
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LRScheduler = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    loss_function: torch.nn.Module = field(init=False)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_mean_dice: float = -1.0
    best_epoch: int = 0
    training_time_s: float = 0.0
    average: WeightAverage = field(default_factory=WeightAverage)

    def __post_init__(self, steps_per_epoch: int) -> None:
        """AdamW with warm-up + cosine stepped per iteration, AMP's GradScaler (on CUDA), DiceCE."""
        config, cuda = self.config, self.device.type == "cuda"
        self.model = self.network
        if self.context.enabled:
            self.model = DistributedDataParallel(
                self.network, device_ids=[self.device.index] if cuda else None
            )
        self.optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = warmup_cosine(
            self.optimizer, config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        self.loss_function = DiceCELoss(to_onehot_y=True, softmax=True)

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_states(),
            "epoch": epoch,
            "history": self.history,
            "best_mean_dice": self.best_mean_dice,
            "best_epoch": self.best_epoch,
            "training_time_s": self.training_time_s,
            "average": self.average.state_dict(),
            "config": json.dumps(config_to_json(self.config)),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (``state``'s output)."""
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng_states(state["rng"])
        self.history = ckpt.current_history(state["history"])
        self.best_mean_dice, self.best_epoch = state["best_mean_dice"], state["best_epoch"]
        self.training_time_s = state["training_time_s"]
        self.average.load_state_dict(state.get("average"))


def train(options: TrainOptions) -> TrainResult:
    """Run (or resume) one training job and export its best model as a bundle."""
    device = resolve_device(options.device)
    context = init_distributed(device)
    try:
        return _train(options, rank_device(device, context), context)
    finally:
        shutdown(context)


def _train(options: TrainOptions, device: torch.device, context: DistributedContext) -> TrainResult:
    saved = _prepare_out_folder(options, device)
    config = _effective_config(options, saved)
    set_determinism(seed=config.seed)
    dataset = open_dataset(options.dataset, config)
    split = _split(options, dataset, config, context)
    template, network = _network(config, options.init_from, device)
    cached, val_cases = _load_cases(dataset, split, config)
    template = replace(
        template, inference=replace(template.inference, input_histogram=histogram_range(cached))
    )
    patches = PatchDataset(cached, augmentation(config), config.seed)
    loader, sampler, generator = _loader(patches, config, context)
    start_epoch = 1 if saved is None else int(saved["epoch"]) + 1
    reporter = _reporter(options, context, config.epochs * len(loader), (start_epoch - 1) * len(loader))
    run = Run(config, device, context, reporter, network, len(loader))
    if saved is not None:
        run.restore(saved)
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.monotonic()
        patches.set_epoch(epoch)
        generator.manual_seed(config.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loss = _train_epoch(run, loader, epoch, options.cancel)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss,
            "lr": run.scheduler.get_last_lr()[0],
            "val": None,
        }
        _average_weights(run, epoch, loader, record)
        if epoch % config.validate_every == 0 or epoch == config.epochs:
            record["val"] = validate(run.network, template, val_cases, device, context)
        run.training_time_s += time.monotonic() - started
        _end_epoch(run, record, options.out)
    return _finish(run, options, template, dataset, split)


def _average_weights(run: Run, epoch: int, loader: DataLoader, record: dict) -> None:
    """Fold this epoch's weights into the running mean while in the final ``average_last_epochs``
    (all epochs when a shorter run, e.g. ``--epochs 5``, has fewer); after the final epoch the
    network takes the mean (then validated like any epoch)."""
    config = run.config
    window_start = max(1, config.epochs - config.average_last_epochs + 1)
    if config.average_last_epochs == 0 or epoch < window_start:
        return
    run.average.add(run.network, epoch, window_start)
    if epoch == config.epochs:
        run.average.apply_to(run.network, loader, run.device)
        record["weights"] = run.average.describe(epoch)


def _load_cases(
    dataset: Dataset, split: Split, config: TrainingConfig
) -> tuple[list[dict], list[ValidationCase]]:
    """Training cases prepared once for the patch pipeline; validation cases as read (original grid)."""
    return prepared_cases(dataset, config, split.train), validation_cases(dataset, config, split.val)


def prepared_cases(dataset: Dataset, config: TrainingConfig, case_ids: Sequence[str]) -> list[dict]:
    """The named cases read, relabelled and passed through ``prepare_case``."""
    lookup = label_lookup(dataset, config)
    by_id = {case.case_id: case for case in dataset.cases}
    return [prepare_case(*load_case(by_id[case_id], lookup), config) for case_id in case_ids]


def _reporter(
    options: TrainOptions, context: DistributedContext, total_steps: int, done_steps: int
) -> Reporter:
    """Rank 0 reports; the other ranks stay silent."""
    if not context.is_main:
        return Reporter("none", total_steps, done_steps)
    return Reporter(options.progress, total_steps, done_steps, options.callback, options.out / "tensorboard")


def _prepare_out_folder(options: TrainOptions, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None; refuse to overwrite an earlier run by accident."""
    last = options.out / ckpt.LAST
    if options.resume:
        return ckpt.load_checkpoint(last, device)
    if last.exists():
        raise TrainingConfigError(
            f"{options.out} already holds a training run; use --resume to continue it or choose another --out"
        )
    if options.config is None:
        raise TrainingConfigError("--config is required (except with --resume)")
    options.out.mkdir(parents=True, exist_ok=True)
    return None


def _effective_config(options: TrainOptions, saved: dict[str, Any] | None) -> TrainingConfig:
    """The run's config (the checkpoint's when resuming), with ``--epochs`` and ``--seed`` applied."""
    if saved is None:
        assert options.config is not None  # _prepare_out_folder refuses a new run without one
        config = options.config
    else:
        config = config_from_json(json.loads(saved["config"]), "checkpoint")
    if saved is not None and options.seed is not None and options.seed != config.seed:
        raise TrainingConfigError(f"--seed {options.seed} differs from the resumed run's seed {config.seed}")
    return replace(
        config,
        epochs=config.epochs if options.epochs is None else options.epochs,
        seed=config.seed if options.seed is None else options.seed,
    ).validate()


def _split(
    options: TrainOptions, dataset: Dataset, config: TrainingConfig, context: DistributedContext
) -> Split:
    path = options.out / SPLIT_FILE
    if options.resume and path.is_file():
        return split_from_json(json.loads(path.read_text(encoding="utf-8")))
    split = make_split(dataset, config.val_fraction, config.seed)
    if context.is_main:
        write_text_atomic(path, json.dumps(split.to_json(), indent=2) + "\n")
    return split


def _network(
    config: TrainingConfig, init_from: Path | None, device: torch.device
) -> tuple[ModelBundle, torch.nn.Module]:
    """The bundle template and its network: fresh, or initialised from a fitting bundle."""
    template = config.bundle_template()
    if init_from is None:
        network = build_network(
            template.architecture, template.dims, template.in_channels, template.out_channels
        )
        return template, network.to(device)
    source = load_bundle(init_from)
    check_fits(source, template, init_from)
    template = replace(template, architecture=source.architecture)
    return template, load_network(source, device).train()


def check_fits(source: ModelBundle, template: ModelBundle, path: Path) -> None:
    """A bundle can be fine-tuned only with the same dims, input channels and label map."""
    wanted = {value: info.name for value, info in template.labels.items()}
    found = {value: info.name for value, info in source.labels.items()}
    problems = [
        f"it is {source.dims}D, the config is {template.dims}D" if source.dims != template.dims else "",
        f"it takes {source.in_channels} input channel(s), the config {template.in_channels}"
        if source.in_channels != template.in_channels
        else "",
        f"its labels {found} differ from the config's {wanted}" if found != wanted else "",
    ]
    problems = [problem for problem in problems if problem]
    if problems:
        raise TrainingConfigError(f"--init-from {path}: cannot fine-tune this model: {'; '.join(problems)}")


def _loader(
    patches: PatchDataset, config: TrainingConfig, context: DistributedContext
) -> tuple[DataLoader, DistributedSampler | None, torch.Generator]:
    sampler: DistributedSampler | None = (
        DistributedSampler(patches, context.world_size, context.rank, shuffle=True, seed=config.seed)
        if context.enabled
        else None
    )
    generator = torch.Generator()
    loader = DataLoader(
        patches,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=concatenate_samples,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler, generator


def _train_epoch(run: Run, loader: DataLoader, epoch: int, cancel: CancelToken) -> float:
    """One pass over the training cases; returns the mean loss (over all ranks)."""
    run.model.train()
    total = torch.zeros(2, dtype=torch.float64)
    steps = len(loader)
    for step, (images, labels) in enumerate(loader, start=1):
        cancel.check()
        loss = train_step(
            run, images.to(run.device, non_blocking=True), labels.to(run.device, non_blocking=True)
        )
        total += torch.tensor([loss, 1.0], dtype=torch.float64)
        run.reporter.step(epoch, step, steps, loss, (epoch - 1) * steps + step)
    total = sum_across_ranks(total, run.context)
    return float(total[0] / total[1])


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Forward, loss, backward and update (mixed precision on CUDA); returns the loss."""
    run.optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=run.device.type == "cuda"):
        loss = run.loss_function(run.model(images), labels)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return float(loss.detach())


def _end_epoch(run: Run, record: dict[str, Any], out: Path) -> None:
    """Record the epoch; rank 0 writes the last (and, if improved, best) checkpoint and the curves."""
    run.history.append(record)
    improved = record["val"] is not None and record["val"]["mean_dice"] > run.best_mean_dice
    if improved:
        run.best_mean_dice, run.best_epoch = record["val"]["mean_dice"], record["epoch"]
    if run.context.is_main:
        state = run.state(record["epoch"])
        ckpt.save_checkpoint(out / ckpt.LAST, state)
        if improved:
            ckpt.save_checkpoint(out / ckpt.BEST, state)
        if record["val"] is not None:
            write_curves(run.history, out / CURVES_FILE)
        run.reporter.epoch_end(record)
    barrier(run.context)


def _finish(
    run: Run, options: TrainOptions, template: ModelBundle, dataset: Dataset, split: Split
) -> TrainResult:
    """Rank 0 exports the best checkpoint's weights as a bundle with provenance and metrics."""
    folder = options.out / "bundle" / f"{template.name}-v{template.version}"
    if run.context.is_main:
        best = ckpt.load_checkpoint(options.out / ckpt.BEST, torch.device("cpu"))
        best_record = next(r for r in run.history if r["epoch"] == run.best_epoch)
        provenance = Provenance(
            dataset=dataset.root,
            split=split,
            config=run.config,
            command=options.command,
            hardware=hardware_description(run.device, run.context),
            training_time_s=run.training_time_s,
            best_epoch=run.best_epoch,
            weights=best_record.get("weights", f"those at the end of epoch {run.best_epoch}"),
        )
        validation = {**best_record["val"], "epoch": run.best_epoch}
        bundle = replace(template, provenance=provenance.to_json(), validation=validation)
        folder = export_bundle(options.out, bundle, best["model"], run.config)
        run.reporter.done(
            {
                "bundle": str(folder),
                "best_epoch": run.best_epoch,
                "best_mean_dice": run.best_mean_dice,
                "training_time_s": run.training_time_s,
            }
        )
    barrier(run.context)
    return TrainResult(folder, run.history, run.best_epoch, run.best_mean_dice, run.training_time_s)
