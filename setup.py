from setuptools import find_packages, setup

setup(
    name="ludwig_llm",
    version="0.1.0",
    description="Declarative fine-tuning, prompting and evaluation of large language models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Only the library. docs_macros/ serves the docs site from the repository (mkdocs.yml's
    # `module_name`) and needs the `docs` extra's jinja2, so it is not installed.
    packages=find_packages(include=["ludwig_llm", "ludwig_llm.*"]),
    include_package_data=True,
    package_data={"ludwig_llm": ["examples_data/*"]},
    install_requires=[
        # torch is not pinned here: pin the build you want first (see README); a bare
        # 'torch' requirement would pull a multi-GB CUDA build on CPU-only machines.
        "torch>=2.4",
        "transformers>=5.0,<6",
        "peft>=0.17",
        "accelerate>=1.10",
        "datasets>=4.0",
        "safetensors>=0.4",
        "gguf>=0.10",
        "bitsandbytes>=0.45",
        "marshmallow>=3.20",
        "marshmallow-dataclass>=8.7",
        "PyYAML>=6",
        "pandas>=2",
        "pyarrow>=14",
        "tqdm>=4.60",
        "torchmetrics>=1.4",
        "sacrebleu>=2.4",
        "rouge-score>=0.1.2",
        "sentence-transformers>=3.0",
        "matplotlib>=3.8",  # learning-curve and confusion-matrix PNGs of every run
        "huggingface_hub>=0.34",  # `upload`
        "tensorboard>=2.15",  # event files of every fine-tuning run (tracking.tensorboard)
    ],
    extras_require={
        "ray": ["ray[train,data]>=2.50"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29"],
        "mlflow": ["mlflow-skinny>=2.10"],
        "wandb": ["wandb>=0.19"],
        "deepspeed": ["ray[train,data]>=2.50", "deepspeed>=0.16"],
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocs-macros-plugin>=1.3", "jinja2>=3.1", "mkdocstrings>=1.0",
                 "mkdocstrings-python>=2.0"],
        "test": ["pytest>=8", "jsonschema>=4", "fastapi>=0.110", "uvicorn>=0.29", "openai>=1.30", "httpx>=0.27", "pillow>=10", "mlflow-skinny>=2.10",
                 "wandb>=0.19", "ray[train,data]>=2.50", "deepspeed>=0.16", "mkdocs>=1.6", "mkdocs-material>=9.5",
                 "mkdocs-macros-plugin>=1.3", "jinja2>=3.1", "mkdocstrings>=1.0",
                 "mkdocstrings-python>=2.0"],
    },
    entry_points={"console_scripts": ["ludwig_llm=ludwig_llm.cli:main"]},
)
