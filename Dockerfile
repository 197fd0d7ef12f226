# Multi-stage: a static zkgate binary on a distroless base, run as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /zkgate ./cmd/zkgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /zkgate /zkgate
USER nonroot:nonroot
EXPOSE 2181 9181
ENTRYPOINT ["/zkgate"]
CMD ["serve", "--help"]
