"""Persistence shared by the API and the workers: engine, session, models.

A package of its own so that the workers' tasks can read and write jobs
without importing the web application.
"""
