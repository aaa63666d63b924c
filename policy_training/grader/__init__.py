"""The grader service: the evaluator and the RL reward over HTTP, for our trainer and anyone's.

    KERNELPILOT_GRADER_TOKEN=... kernelpilot grader serve --host 0.0.0.0 --port 8765 --gpus all

    protocol.py     the request and response bodies and their limits (also the OpenAPI page, /docs)
    lanes.py        where evaluations run: a runtime here, or one spawned process per GPU
    pool.py         the lanes behind a bounded queue, deadlines, the reward (one ProblemStats)
    app.py          the FastAPI app: token, body limits, /v1/health, /v1/queue, /v1/grade
    serve.py        the token rules and uvicorn
    client.py       GraderClient / AsyncGraderClient (httpx, retries on 429 and 503)
    trl_reward.py   a TRL reward function (sync or async) that grades through the service
"""
