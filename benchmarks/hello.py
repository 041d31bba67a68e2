"""The hello-world baseline of the HTTP benchmark: the same FastAPI + uvicorn stack, no work."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
