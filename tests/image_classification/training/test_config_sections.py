"""TrainingConfig in sections: every setting lives in one section, and keeps the flat name that checkpoints, reports,
presets and both CLIs know it by."""
import dataclasses

import pytest

from image_classification.data.config import DataConfig
from image_classification.training.config import SECTION_OF, Sections, TrainingConfig

# The names a saved checkpoint's "config" and the JSON report carry, written before the sections existed: readers
# of those files (resume, upstream parsers, users' scripts) look them up, so none may change.
FLAT_NAMES = """
arch num_classes model_kwargs pretrained_from_file pretrained pretrained_weights fresh_classifier data
data_backend image_size val_image_size crop_pct interpolation val_interpolation augmentation crop_scale
crop_ratio hflip vflip no_aug train_split val_split mean std val_batch_size color_jitter random_erasing
random_erasing_mode random_erasing_count workers prefetch skip_bad_images synthetic_steps epochs run_epochs
batch_size optimizer_batch_size optimizer lr lr_schedule lr_steps lr_decay_rate lr_decay_epochs end_lr warmup
warmup_lr momentum nesterov weight_decay bn_weight_decay rmsprop_alpha rmsprop_eps adam_betas clip_grad
label_smoothing mixup cutmix cutmix_minmax mixup_prob mixup_switch_prob mixup_mode mixup_off_epoch
lr_schedule_epochs resume_optimizer sync_bn use_ema teacher teacher_checkpoint teacher_img_size
kd_temperature kd_weight test_teacher early_stopping_patience precision static_loss_scale memory_format
device cudnn_benchmark deterministic compile compile_mode compile_options fused_optimizer stream_priority
fast_inference inference_compile seed print_freq prof evaluate training_only save_checkpoints
checkpoint_filename gather_checkpoints resume workspace raport_file tensorboard progress topk gpu_affinity
output_style checkpoint_hist best_from_ema cli_args sigusr1 overwrite max_nonfinite_steps dist_timeout
""".split()


def test_saved_configs_keep_their_flat_names():
    assert sorted(TrainingConfig().to_dict()) == sorted(FLAT_NAMES)


def test_each_setting_is_in_exactly_one_section_and_shadows_nothing():
    per_section = [f.name for s in dataclasses.fields(Sections) for f in dataclasses.fields(s.default_factory)]
    assert len(per_section) == len(set(per_section)) == len(SECTION_OF)
    # (config.py refuses a setting named like a method when it is imported)
    assert not {f.name for f in dataclasses.fields(TrainingConfig)} & set(SECTION_OF)


def test_flat_names_read_and_write_the_section():
    cfg = TrainingConfig(lr=0.3, data="/images", batch_size=8, workspace="out")
    assert (cfg.sections.optim.lr, cfg.sections.data.data, cfg.sections.data.batch_size) == (0.3, "/images", 8)
    assert cfg.sections.output.workspace == "out"
    cfg.warmup = 2.0
    assert cfg.sections.schedule.warmup == 2.0
    assert isinstance(cfg.sections.data, DataConfig) and cfg.sections.data == DataConfig(data="/images", batch_size=8)
    with pytest.raises(TypeError, match="no_such_setting"):
        TrainingConfig(no_such_setting=1)


def test_a_saved_config_comes_back_equal():
    cfg = TrainingConfig(arch="gpunet-0", lr_steps=(1, 2), model_kwargs={"dropout": 0.3}, seed=4, topk=3)
    saved = cfg.to_dict()
    assert TrainingConfig.from_dict({**saved, "a_name_from_an_older_release": 1}) == cfg
    assert saved["model_kwargs"] is not cfg.model_kwargs  # a copy: editing the record leaves the run alone


def test_replace_copies_the_sections():
    cfg = TrainingConfig(lr=0.1)
    other = dataclasses.replace(cfg, lr=0.2, pretrained=True)
    other.workers = 0
    assert (cfg.lr, cfg.pretrained, cfg.workers) == (0.1, False, 5)
    assert (other.lr, other.pretrained, other.workers) == (0.2, True, 0)
    assert other.flag("workers") == cfg.flag("workers")
