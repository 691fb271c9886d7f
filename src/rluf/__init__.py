"""rluf: Reinforcement Learning from User Feedback."""
__version__ = "0.1.0"
