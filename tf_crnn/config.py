"""`Params`: every setting of a tf_crnn run, its default, its validation and the values derived from
it.

Params is the only source of settings: the rest of the package reads ``params.x`` and never keeps a
default of its own. A run's Params are saved as ``params.json`` beside its checkpoints, so a job
directory always says how its model was made.

Setting names follow solivr/tf-crnn where it had one (``input_shape``, ``train_batch_size``,
``lookup_alphabet_file``, ``n_epochs``, ``save_interval``, ``num_beam_paths``, ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tf_crnn import network, precision
from tf_crnn.alphabet import BUILTIN_NAMES
from tf_crnn.job_files import write_atomically
from tf_crnn.setting_values import (
    ParamsError,
    coerce,
    parse_key_values,
    read_settings_file,
    settings_from_json,
)

OPTIMIZERS = ("adam", "adadelta", "rmsprop", "momentum")
LEARNING_RATE_SCHEDULES = ("constant", "exponential", "cosine")
DECODERS = ("beam", "greedy")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker_mirrored", "parameter_server")
# The default network: the paper's (network.PRESETS names the others).
PAPER = network.PRESETS["paper"]
# Settings checked alike in Params.validate.
AUGMENTATION_RANGES = """
    aug_rotation_max_degrees aug_shear_max aug_padding_max aug_brightness_max
    aug_contrast_max aug_noise_stddev_max
""".split()
AT_LEAST_ONE = """
    train_batch_size eval_batch_size shuffle_buffer_size save_interval
    keep_checkpoint_max save_summary_steps exports_to_keep best_exports_to_keep
    log_step_count_steps rnn_units rnn_layers beam_width
    num_beam_paths check_sample_size
""".split()
AT_LEAST_ZERO = """
    train_steps eval_steps learning_decay_steps warmup_steps
    eval_throttle_secs eval_start_delay_secs check_all_images_up_to
""".split()


def _doc(default: Any, doc: str, **kwargs: Any) -> Any:
    """A dataclass field whose one-line documentation travels with it (README table, --help)."""
    if isinstance(default, (list, dict)):
        return field(
            default_factory=lambda: json.loads(json.dumps(default)), metadata={"doc": doc}, **kwargs
        )
    return field(default=default, metadata={"doc": doc}, **kwargs)


@dataclass
class Params:
    # One declaration per setting, its documentation beside it (kept as written by hand).
    # fmt: off
    # --- input ------------------------------------------------------------------------------------
    input_shape: list[int] = _doc([32, 128], "Network input [height, width]; images are fitted to "
        "it keeping their aspect ratio.")
    input_channels: int = _doc(1, "1 = grayscale, 3 = RGB. Images of any colour mode are "
        "converted.")
    csv_delimiter: str = _doc(";", "Delimiter between image path and label in the CSV files.")
    string_split_delimiter: str = _doc("", "If set (tf-crnn used '|'), labels are split on it "
        "into units; otherwise every Unicode character is a unit.")
    skip_bad_samples: bool = _doc(False, "Skip (and count) unreadable rows and images instead of "
        "stopping with an error.")
    check_all_images_up_to: int = _doc(200_000, "The start-up check decodes every image when the "
        "CSV files have at most this many usable rows, else only a random sample.")
    check_sample_size: int = _doc(2000, "Images the start-up check decodes when there are more "
        "rows than check_all_images_up_to.")
    # --- alphabet ---------------------------------------------------------------------------------
    alphabet: str = _doc("auto", "Built-in alphabet name (digits, letters_symbols, "
        "letters_digits_symbols), or 'auto' to collect it from the training CSV labels.")
    alphabet_string: str = _doc("", "The alphabet as a plain string of units (split like labels); "
        "leave 'alphabet' at 'auto'.")
    lookup_alphabet_file: str = _doc("", "tf-crnn lookup JSON {\"unit\": code}; leave 'alphabet' "
        "at 'auto'.")
    alphabet_case_fold: bool = _doc(False, "Lower-case labels and alphabet, so that 'A' and 'a' "
        "are one class.")
    alphabet_units: list[str] = _doc([], "The resolved alphabet, in code order (filled in from "
        "the sources above and saved with the run).")
    # --- augmentation (TRAIN only; each is off at 0) ----------------------------------------------
    data_augmentation: bool = _doc(True, "Master switch for training-time augmentation.")
    cache_decoded_images: bool = _doc(False, "Keep every image decoded and fitted after its first "
        "read, in a tf.data cache under the job directory's decoded_cache/ (augmentation still "
        "runs at every read): for data sets whose image decoding is the bottleneck.")
    aug_rotation_max_degrees: float = _doc(1.5, "Random rotation in [-x, x] degrees.")
    aug_shear_max: float = _doc(0.15, "Random horizontal shear (slant) factor in [-x, x].")
    aug_padding_max: float = _doc(0.1, "Random margins up to x times the image height on each "
        "side (content shifts and shrinks).")
    aug_brightness_max: float = _doc(0.15, "Random brightness shift in [-x, x] (pixels in [0, 1]).")
    aug_contrast_max: float = _doc(0.3, "Random contrast factor in [1 - x, 1 + x].")
    aug_noise_stddev_max: float = _doc(0.03, "Gaussian noise with a random stddev in [0, x].")
    aug_blur_probability: float = _doc(0.2, "Probability of a 3x3 box blur.")
    # --- batches and training length --------------------------------------------------------------
    train_batch_size: int = _doc(64, "Global training batch size (split across replicas when "
        "distributed).")
    eval_batch_size: int = _doc(64, "Evaluation and prediction batch size.")
    shuffle_buffer_size: int = _doc(10000, "Shuffle buffer of the training set (reshuffled each "
        "epoch).")
    train_steps: int = _doc(10000, "Total training steps (global step target); recomputed from "
        "n_epochs when that is set.")
    n_epochs: float = _doc(0.0, "Train for this many epochs instead of train_steps (0 = use "
        "train_steps).")
    eval_steps: int = _doc(0, "Batches per evaluation (0 = the whole evaluation set).")
    # --- optimisation -----------------------------------------------------------------------------
    optimizer: str = _doc("adam", "adam, adadelta (the paper's, use learning_rate 1.0), rmsprop "
        "or momentum.")
    learning_rate: float = _doc(1e-3, "Initial learning rate.")
    momentum: float = _doc(0.9, "Momentum of the momentum and rmsprop optimizers.")
    learning_rate_schedule: str = _doc("constant", "constant, exponential or cosine.")
    learning_decay_steps: int = _doc(0, "Exponential: steps per decay by learning_decay_rate; "
        "cosine: steps to decay to 0 (0 = train_steps for both).")
    learning_decay_rate: float = _doc(0.96, "Exponential decay factor per learning_decay_steps.")
    learning_decay_staircase: bool = _doc(False, "Exponential decay in steps instead of "
        "continuously.")
    warmup_steps: int = _doc(0, "Linear learning-rate warm-up from 0 over this many steps.")
    gradient_clip_norm: float = _doc(5.0, "Clip gradients by global norm (0 = off).")
    # --- network ----------------------------------------------------------------------------------
    conv_filters: list[int] = _doc(PAPER["conv_filters"], "Filters of the 7 conv layers (paper "
        "Table 1; --preset small: a quarter).")
    rnn_units: int = _doc(PAPER["rnn_units"], "LSTM units per direction.")
    rnn_layers: int = _doc(2, "Stacked bidirectional LSTM layers.")
    dropout_rate: float = _doc(0.2, "Dropout before each BiLSTM and before the output layer "
        "(TRAIN only).")
    precision: str = _doc("auto", "float32, mixed_bfloat16, mixed_float16, or auto: bfloat16 on "
        "CPUs with AMX or AVX-512 BF16, float16 on GPUs with tensor cores, else float32. Loss and "
        "decoding stay float32.")
    export_precision: str = _doc("float32", "Precision of exported SavedModels (same choices; auto "
        "decides on the exporting machine). float32 serves anywhere, with the lowest one-image "
        "latency on CPUs.")
    export_filenames_signature: bool = _doc(False, "Also export the 'filenames' signature, which "
        "reads image paths on the server: whoever can call the model can then make it read any "
        "file or bucket the server can reach. Off: a served model opens no files.")
    batch_norm_momentum: float = _doc(0.9, "Batch-norm moving-average momentum. Keras' 0.99 lags "
        "for hundreds of steps and makes early evaluations look broken.")
    # --- decoding ---------------------------------------------------------------------------------
    decoder: str = _doc("beam", "CTC decoding in predictions and exports: beam (beam search, "
        "num_beam_paths words per image) or greedy (the best path, one word per image: what "
        "evaluation measures and the paper's lexicon-free reading, and faster to serve).")
    beam_width: int = _doc(10, "CTC beam width for prediction (decoder 'beam').")
    num_beam_paths: int = _doc(3, "Top paths returned by beam search (top_words, scores).")
    # --- checkpoints, summaries, evaluation -------------------------------------------------------
    save_interval: int = _doc(500, "Checkpoint every N steps.")
    keep_checkpoint_max: int = _doc(5, "Checkpoints kept.")
    save_summary_steps: int = _doc(100, "TensorBoard summaries every N steps.")
    log_step_count_steps: int = _doc(100, "Log loss and steps/s every N steps.")
    eval_throttle_secs: int = _doc(60, "Evaluate at most every N seconds (after a new checkpoint).")
    eval_start_delay_secs: int = _doc(0, "Seconds before the first evaluation.")
    exports_to_keep: int = _doc(3, "SavedModels kept in JOB_DIR/export/latest (one after each "
        "evaluation).")
    best_exports_to_keep: int = _doc(1, "SavedModels with the lowest evaluation CER kept in "
        "JOB_DIR/export/best.")
    random_seed: int = _doc(42, "Graph-level random seed.")
    warm_start_from: str = _doc("", "Start a new job directory from the network weights of another "
        "run: its job directory, a checkpoint or an export. The optimizer starts afresh, and the "
        "output layer too if the alphabet differs. Ignored once the job directory has checkpoints.")
    # --- distribution -----------------------------------------------------------------------------
    distribution: str = _doc("none", "none (one device, or TF_CONFIG between-graph replication), "
        "mirrored (several GPUs of one machine), multi_worker_mirrored or parameter_server "
        "(several machines through TF_CONFIG).")
    mirrored_devices: list[str] = _doc([], "Devices for 'mirrored', e.g. [\"/gpu:0\", \"/gpu:1\"] "
        "(empty: every GPU, else the CPU).")
    # fmt: on

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _refuse_unknown(cls, values: dict[str, Any], source: str) -> None:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ParamsError(
                f"Unknown setting(s) {', '.join(unknown)} in {source}. "
                f"Valid settings: {', '.join(cls.field_names())}"
            )

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """Every setting's default: its type is what a JSON or command-line value is converted
        to."""
        return cls().to_dict()

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> Params:
        cls._refuse_unknown(values, source)
        defaults = cls.field_defaults()
        coerced = {key: coerce(key, value, defaults[key]) for key, value in values.items()}
        return cls(**coerced)

    @classmethod
    def from_json(cls, path: str) -> Params:
        return cls.from_dict(read_settings_file(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json_string(cls, text: str, source: str = "JSON settings") -> Params:
        return cls.from_dict(settings_from_json(text, source), source=source)

    def to_json(self, path: str) -> None:
        """Saves the settings to ``path`` atomically: a kill meanwhile leaves the old file."""
        write_atomically(path, self.to_json_string())

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> Params:
        """A copy with ``overrides`` (values may be strings from the command line) applied."""
        merged = self.to_dict()
        self._refuse_unknown(overrides, source)
        # Converted to the type of the default, not of the current value (which may be 1 for a
        # float).
        defaults = self.field_defaults()
        merged.update({key: coerce(key, value, defaults[key]) for key, value in overrides.items()})
        return type(self)(**merged)

    def with_preset(self, name: str) -> Params:
        """A copy with the network preset ``name`` (``network.PRESETS``) applied."""
        if name not in network.PRESETS:
            raise ParamsError(f"preset: {name!r} is not one of {', '.join(network.PRESETS)}")
        return self.with_overrides(network.PRESETS[name], source=f"preset {name}")

    def as_exported(self) -> Params:
        """The settings an export computes with: ``export_precision`` in place of ``precision``."""
        return self.with_overrides({"precision": self.export_precision})

    def with_decoder(self, decoder: str) -> Params:
        """A copy that decodes with ``decoder``; away from beam search, the beam settings go back
        to their defaults, which they must have when they do not apply."""
        overrides = {"decoder": decoder}
        if decoder != "beam":
            defaults = self.field_defaults()
            overrides.update({key: defaults[key] for key in ("beam_width", "num_beam_paths")})
        return self.with_overrides(overrides)

    def with_key_values(self, pairs: Iterable[str]) -> Params:
        """Applies ``key=value`` strings (``--param`` on the command line)."""
        return self.with_overrides(parse_key_values(pairs), source="--param")

    # --- validation --------------------------------------------------------------------------
    def validate(self) -> None:
        def require(condition: bool, key: str, problem: str) -> None:
            if not condition:
                raise ParamsError(f"{key}: {problem} (got {getattr(self, key)!r})")

        require(
            len(self.input_shape) == 2 and all(isinstance(v, int) for v in self.input_shape),
            "input_shape",
            "must be [height, width]",
        )
        height, width = self.input_shape
        problem = network.input_shape_problem(height, width)
        require(problem is None, "input_shape", problem)
        require(self.input_channels in (1, 3), "input_channels", "must be 1 or 3")
        require(len(self.csv_delimiter) == 1, "csv_delimiter", "must be one character")
        require(
            self.string_split_delimiter != self.csv_delimiter or not self.string_split_delimiter,
            "string_split_delimiter",
            "must differ from csv_delimiter",
        )
        require(
            self.alphabet in ("auto",) + BUILTIN_NAMES,
            "alphabet",
            f"must be 'auto' or one of {', '.join(BUILTIN_NAMES)}",
        )
        sources = [k for k in ("alphabet_string", "lookup_alphabet_file") if getattr(self, k)]
        require(
            len(sources) <= 1,
            "alphabet_string",
            "set either alphabet_string or lookup_alphabet_file, not both",
        )
        require(
            not sources or self.alphabet == "auto",
            "alphabet",
            f"leave it at 'auto' when {sources[0] if sources else ''} is set",
        )
        for key in AUGMENTATION_RANGES:
            require(getattr(self, key) >= 0, key, "must be >= 0 (0 turns it off)")
        require(self.aug_rotation_max_degrees <= 45, "aug_rotation_max_degrees", "must be <= 45")
        require(self.aug_padding_max <= 1, "aug_padding_max", "must be <= 1")
        require(self.aug_contrast_max < 1, "aug_contrast_max", "must be < 1")
        require(0 <= self.aug_blur_probability <= 1, "aug_blur_probability", "must be in [0, 1]")
        for key in AT_LEAST_ONE:
            require(getattr(self, key) >= 1, key, "must be >= 1")
        for key in AT_LEAST_ZERO:
            require(getattr(self, key) >= 0, key, "must be >= 0")
        require(self.n_epochs >= 0, "n_epochs", "must be >= 0")
        require(
            self.train_steps > 0 or self.n_epochs > 0, "train_steps", "set train_steps or n_epochs"
        )
        require(
            self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}"
        )
        choices = ", ".join(precision.PRECISIONS)
        require(self.precision in precision.PRECISIONS, "precision", f"must be one of {choices}")
        require(
            self.export_precision in precision.PRECISIONS,
            "export_precision",
            f"must be one of {choices}",
        )
        require(
            self.distribution in DISTRIBUTIONS,
            "distribution",
            f"must be one of {', '.join(DISTRIBUTIONS)}",
        )
        require(
            not self.mirrored_devices or self.distribution == "mirrored",
            "mirrored_devices",
            "only applies with distribution='mirrored'",
        )
        require(self.learning_rate > 0, "learning_rate", "must be > 0")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        require(
            self.learning_rate_schedule in LEARNING_RATE_SCHEDULES,
            "learning_rate_schedule",
            f"must be one of {', '.join(LEARNING_RATE_SCHEDULES)}",
        )
        require(0 < self.learning_decay_rate <= 1, "learning_decay_rate", "must be in (0, 1]")
        # A setting given for an optimizer or schedule that does not use it would silently do
        # nothing.
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        require(
            self.momentum == defaults["momentum"] or self.optimizer in ("rmsprop", "momentum"),
            "momentum",
            f"only applies to the rmsprop and momentum optimizers, not {self.optimizer}",
        )
        for key in ("learning_decay_rate", "learning_decay_staircase"):
            require(
                getattr(self, key) == defaults[key] or self.learning_rate_schedule == "exponential",
                key,
                f"only applies to learning_rate_schedule='exponential', not "
                f"{self.learning_rate_schedule!r}",
            )
        require(
            self.learning_decay_steps == defaults["learning_decay_steps"]
            or self.learning_rate_schedule != "constant",
            "learning_decay_steps",
            "does not apply to learning_rate_schedule='constant'",
        )
        require(self.gradient_clip_norm >= 0, "gradient_clip_norm", "must be >= 0 (0 = off)")
        require(
            len(self.conv_filters) == 7
            and all(isinstance(v, int) and v >= 1 for v in self.conv_filters),
            "conv_filters",
            "must be 7 positive integers",
        )
        require(0 <= self.dropout_rate < 1, "dropout_rate", "must be in [0, 1)")
        require(0 < self.batch_norm_momentum < 1, "batch_norm_momentum", "must be in (0, 1)")
        require(self.num_beam_paths <= self.beam_width, "num_beam_paths", "must be <= beam_width")
        require(self.decoder in DECODERS, "decoder", f"must be one of {', '.join(DECODERS)}")
        for key in ("beam_width", "num_beam_paths"):
            require(
                getattr(self, key) == defaults[key] or self.decoder == "beam",
                key,
                f"only applies to decoder='beam', not {self.decoder!r}",
            )
        require(
            all(isinstance(u, str) for u in self.alphabet_units),
            "alphabet_units",
            "must be a list of strings",
        )
        require(
            len(set(self.alphabet_units)) == len(self.alphabet_units),
            "alphabet_units",
            "units must be unique",
        )

    # --- derived values ----------------------------------------------------------------------
    def steps_for_epochs(self, num_samples: int) -> int:
        """Training steps that cover ``n_epochs`` of ``num_samples`` at the global batch size."""
        return max(1, math.ceil(self.n_epochs * num_samples / self.train_batch_size))
