"""The settings that one CLI dialect reaches and the other does not, or neither does, each with the reason.

Both dialects fill one TrainingConfig: ConvNets' (efficientnet/main.py, gpunet/main.py, upstream main.py's flags) and
timm's (gpunet/train.py, GPUNet's fork of timm's train.py). Every other setting has a flag in each, under the
dialect's spelling. tests/image_classification/cli/test_dialects.py probes both parsers and fails when a setting is
reached by one dialect or by neither without being listed here, or is listed here and reached by both.
"""
from __future__ import annotations

# setting -> (the dialect that reaches it, why the other has no flag for it)
ONE_DIALECT = {
    # ConvNets only
    "bn_weight_decay": ("convnets", "timm never decays BatchNorm weights and biases, which is this setting's default"),
    "checkpoint_filename": ("convnets", "timm's layout always names the latest checkpoint last.pth.tar"),
    "gather_checkpoints": ("convnets", "timm's layout keeps the best checkpoints (--checkpoint-hist), not the last"),
    "save_checkpoints": ("convnets", "timm's train.py always writes its checkpoints"),
    "topk": ("convnets", "timm's train.py reports top-1 and top-5"),
    "evaluate": ("convnets", "timm users evaluate with validate.py, not a train.py mode"),
    "fast_inference": ("convnets", "acts on --evaluate only, which timm's train.py does not have"),
    "inference_compile": ("convnets", "acts on --evaluate only, which timm's train.py does not have"),
    "training_only": ("convnets", "timm's train.py validates every epoch"),
    "early_stopping_patience": ("convnets", "upstream main.py's flag; timm's train.py has none"),
    "run_epochs": ("convnets", "upstream's chunked jobs; a timm run is continued with --resume"),
    "lr_steps": ("convnets", "timm's step schedule decays every --decay-epochs, not at listed epochs"),
    "rmsprop_alpha": ("convnets", "timm's rmsproptf keeps alpha 0.9, this setting's default"),
    "optimizer_batch_size": ("convnets", "timm's train.py (GPUNet's fork of timm 0.5.4) has no gradient "
                                         "accumulation"),
    "static_loss_scale": ("convnets", "upstream main.py's flag; timm's train.py has none (the scaler starts at this "
                                      "setting's default)"),
    "prefetch": ("convnets", "upstream main.py's flag; timm's train.py has none"),
    "gpu_affinity": ("convnets", "upstream main.py's flag; timm's train.py has none"),
    "pretrained_weights": ("convnets", "extends --pretrained-from-file; timm's --initial-checkpoint takes the weights "
                                       "as the checkpoint holds them"),
    "fresh_classifier": ("convnets", "extends --pretrained-from-file; timm's --initial-checkpoint takes the weights "
                                     "as the checkpoint holds them"),
    # timm only
    "adam_betas": ("timm", "upstream main.py has no betas flag; adamw and lamb use 0.9 and 0.999"),
    "checkpoint_hist": ("timm", "the ConvNets layout keeps the last checkpoints (--gather-checkpoints), not the best"),
    "resume_optimizer": ("timm", "upstream main.py's --resume always restores the optimizer"),
    "lr_schedule_epochs": ("timm", "timm's cooldown (--cooldown-epochs) ends the schedule before --epochs"),
    "train_split": ("timm", "upstream main.py reads <data>/train and <data>/val"),
    "val_split": ("timm", "upstream main.py reads <data>/train and <data>/val"),
    "val_batch_size": ("timm", "upstream main.py validates at the training batch size"),
    "mean": ("timm", "upstream main.py normalises with the model's mean and std"),
    "std": ("timm", "upstream main.py normalises with the model's mean and std"),
    "no_aug": ("timm", "timm's augmentation flag; upstream main.py's pipeline has none"),
    "vflip": ("timm", "timm's augmentation flag; upstream main.py's pipeline has none"),
    "color_jitter": ("timm", "timm's augmentation flag; upstream main.py's pipeline has none"),
    "crop_ratio": ("timm", "timm's augmentation flag; upstream main.py's pipeline has none"),
    "random_erasing_count": ("timm", "timm's --recount; the ConvNets dialect takes --reprob and --remode"),
    "cutmix_minmax": ("timm", "timm's mixup option; the ConvNets dialect takes the --mixup and --cutmix alphas"),
    "mixup_prob": ("timm", "timm's mixup option; the ConvNets dialect takes the --mixup and --cutmix alphas"),
    "mixup_switch_prob": ("timm", "timm's mixup option; the ConvNets dialect takes the --mixup and --cutmix alphas"),
    "mixup_mode": ("timm", "timm's mixup option; the ConvNets dialect takes the --mixup and --cutmix alphas"),
    "mixup_off_epoch": ("timm", "timm's mixup option; the ConvNets dialect takes the --mixup and --cutmix alphas"),
    "test_teacher": ("timm", "GPUNet's flag to validate the teacher before training; the ConvNets dialect does not "
                             "offer it"),
}

# setting -> why no flag of either dialect sets it
NO_DIALECT = {
    "output_style": "the dialect's checkpoint layout: convnets or timm",
    "best_from_ema": "the dialect's habit: timm picks the best checkpoint by the EMA's accuracy, ConvNets by the "
                     "trained weights'",
    "cudnn_benchmark": "always on, except under --deterministic",
    "synthetic_steps": "the length of a synthetic pass without --prof, which sets it",
    "val_image_size": "training validates at its own resolution; validate.py takes another",
}
