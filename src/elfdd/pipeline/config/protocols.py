"""Evaluation protocols (``students.protocol``): how the public code bases train a student on a synthetic set, as
presets of the ``students`` keys. A key given explicitly overrides its preset value; the resolved values and the
preset's name go into results.json (``protocol``) and the report's header.

Every protocol below trains with SGD (momentum 0.9, weight decay 5e-4), batch 256, lr x0.1 once at half of the
epochs, DSA on every batch, no gradient clipping, and reports the test accuracy after the last epoch, on the full test
split: they differ in the epochs, the learning rate and the number of evaluations (seeds). Read from (HEAD of each):

    elf_reference  github.com/Lirui-Zhao/ELF ELF_eval.py: --epoch_eval_train 1000, --lr_net 0.01, --batch_train 256,
                   --dsa True (color_crop_cutout_flip_scale_rotate), --num_eval 5; utils.py evaluate_feature_synset:
                   SGD(momentum=0.9, weight_decay=0.0005), lr_schedule [Epoch // 2 + 1]
    dc             github.com/VICO-UoE/DatasetCondensation utils.py evaluate_synset: SGD(momentum=0.9,
                   weight_decay=0.0005), lr_schedule [Epoch // 2 + 1], --batch_train 256, --lr_net 0.01; main.py:
                   epoch_eval_train 1000 with augmentation (DSA), 300 without; --num_eval 20
    mtt            github.com/GeorgeCazenavette/mtt-distillation distill.py: args.lr_net = syn_lr.item() (the learned
                   lr), --epoch_eval_train 1000, --batch_train 256, --dsa True, --num_eval 5; utils.py evaluate_synset as
                   DC's
    elfdd          elfdd's defaults: 300 epochs (the DC-Bench protocol), lr 0.01, two seeds

The references loop ``range(Epoch + 1)`` (1001 epochs) and decay after epoch index Epoch // 2 + 1; elfdd trains
``epochs`` epochs and decays after epoch epochs // 2 (pipeline/training.py: sgd_with_half_decay).
"""

from __future__ import annotations

from typing import Any, Literal

Protocol = Literal["elfdd", "elf_reference", "dc", "mtt"]

_SHARED: dict[str, Any] = {
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "batch_size": 256,
    "dsa": True,
    "grad_clip": None,
    "lr_from_synthetic": False,
}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "elfdd": {**_SHARED, "epochs": 300, "seeds": [0, 1]},
    "elf_reference": {**_SHARED, "epochs": 1000, "seeds": list(range(5))},
    "dc": {**_SHARED, "epochs": 1000, "seeds": list(range(20))},
    "mtt": {**_SHARED, "epochs": 1000, "seeds": list(range(5)), "lr_from_synthetic": True},
}
SOURCES = {
    "elfdd": "elfdd's defaults",
    "elf_reference": "github.com/Lirui-Zhao/ELF ELF_eval.py, utils.py evaluate_feature_synset",
    "dc": "github.com/VICO-UoE/DatasetCondensation utils.py evaluate_synset, main.py",
    "mtt": "github.com/GeorgeCazenavette/mtt-distillation distill.py, utils.py evaluate_synset",
}
DC_EPOCHS_WITHOUT_AUGMENTATION = 300  # DatasetCondensation main.py: no DSA and no DC augmentation


def apply_protocol(students: dict[str, Any]) -> dict[str, Any]:
    """The raw ``students`` section with its protocol's values filled in where no key is given."""
    name = students.get("protocol", "elfdd")
    preset = PROTOCOLS.get(name)
    if preset is None:  # the Literal check names the choices
        return students
    filled = {**preset, **students}
    if name == "dc" and "epochs" not in students and not filled["dsa"]:
        filled["epochs"] = DC_EPOCHS_WITHOUT_AUGMENTATION
    return filled


def protocol_values(students: Any) -> dict[str, Any]:
    """The resolved values of the keys a protocol sets (``students``: a StudentsConfig)."""
    return {key: getattr(students, key) for key in PROTOCOLS["elfdd"]}
